"""tools/crop_sweep.py: the crop geometries on hand-computed cases, the error counts, and (with the shared data)
that its ``margin:0.15`` relabelling gives the worker's own labels."""

from __future__ import annotations

import numpy as np
import pytest

from tests._voc_photo import densest_val_photo, worker_labels
from tools.crop_sweep import main, margin_crop, parse_crops, relabel, square_crop, wrong_by_size
from tools.crowd_eval import TWO_CLASS


def coord_image(h: int = 100, w: int = 200) -> np.ndarray:
    """(h, w, 3) uint8 with pixel (y, x) = (x, y, 7): every crop pixel tells where it came from."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy, np.full_like(xx, 7)], -1).astype(np.uint8)


def test_margin_crop_is_the_workers_crop():
    img = coord_image()
    # box (20, 10, 80, 50): 60 x 40 px; + 0.3 x 60 = 18 px left/right, + 0.3 x 40 = 12 px up/down ->
    # (2, -2, 98, 62), the top clipped: rows 0..62, columns 2..98
    c = margin_crop(img, (20, 10, 80, 50), 0.3)
    assert c.shape == (62, 96, 3)
    assert tuple(c[0, 0]) == (2, 0, 7) and tuple(c[-1, -1]) == (97, 61, 7)
    # + 0.15: 9 px and 6 px -> (11, 4, 89, 56)
    assert margin_crop(img, (20, 10, 80, 50), 0.15).shape == (52, 78, 3)


def test_square_crop_centres_and_replicates_the_border():
    img = coord_image()
    # box (10, 10, 20, 16): longer side 10, k 2 -> side 20; centre (15, 13) -> corner (5, 3)
    c = square_crop(img, (10, 10, 20, 16), 2.0)
    assert c.shape == (20, 20, 3)
    assert tuple(c[0, 0]) == (5, 3, 7) and tuple(c[-1, -1]) == (24, 22, 7)
    # box (0, 0, 10, 10), k 2 -> side 20 at (-5, -5): 5 rows and columns of replicated edge
    e = square_crop(img, (0, 0, 10, 10), 2.0)
    assert e.shape == (20, 20, 3)
    assert tuple(e[0, 0]) == (0, 0, 7) and tuple(e[5, 5]) == (0, 0, 7) and tuple(e[5, 6]) == (1, 0, 7)
    assert tuple(e[6, 5]) == (0, 1, 7) and tuple(e[-1, -1]) == (14, 14, 7)


def test_parse_crops_and_bad_entries():
    assert parse_crops("margin:0.15, square:1.4") == [("margin", 0.15), ("square", 1.4)]
    for bad in ("margin:2", "square:0.5", "circle:1", "margin:x", ""):
        with pytest.raises(SystemExit, match="--crops"):
            parse_crops(bad)


def test_wrong_by_size_counts_per_size():
    pred, truth = np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])
    got = wrong_by_size(pred, truth, ["<16px", "<16px", "16-32px", ">=32px"])
    assert got == {"all": (2, 4), "<16px": (1, 2), "16-32px": (0, 1), ">=32px": (1, 1)}


@pytest.mark.timeout(300)
def test_margin_015_relabels_as_the_worker_and_main_runs(shared_data, tmp_path, capsys, monkeypatch):
    """One val photo with the annotated boxes as the 'detector': relabel(margin:0.15) == Processor's labels."""
    from stream.config import WorkerConfig
    from stream.processor import Processor, create_backend

    photo = densest_val_photo(shared_data)
    cfg = WorkerConfig(mode="faces", device="cpu", max_faces=len(photo.boxes))
    backend = create_backend(cfg)
    worker = worker_labels(photo, backend, cfg)
    proc = Processor(backend, WorkerConfig(mode="faces", device="cpu"), inference_only=True)
    mine = relabel(proc, [margin_crop(photo.image, b[:4], 0.15) for b in photo.boxes])
    assert len(worker) == len(photo.boxes) and [worker[c] for c in photo.clipped()] == mine.tolist()

    # main on an events file of that photo: every annotated face found, one table row per crop
    ev = photo.events(tmp_path / "events.jsonl")
    monkeypatch.setattr("stream.processor.create_backend", lambda cfg: backend)  # built once above (~10 s)
    assert main(["--data", str(photo.data), "--split", "val", "--events", str(ev), "--crops", "margin:0.15,square:1.4"]) == 0
    out = capsys.readouterr().out
    assert f"{len(photo.boxes)} found two-class faces" in out
    truth = [proc.class_names.index(b["label"]) for b in photo.ann["boxes"] if b["label"] in TWO_CLASS]
    wrong = int((mine != np.array(truth)).sum())
    assert f"| margin:0.15 | no | {wrong}/{len(photo.boxes)} |" in out and "| square:1.4 | no |" in out
