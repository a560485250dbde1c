"""The crowd preset's fine-tuning rows (core/data/worker_crops.py, tools/crowd_finetune.py) on hand-computed cases:
the worker's crop and input, the label each found face takes from its annotation, and the photo folds."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from core.data.worker_crops import worker_input_image, worker_rect
from tests._voc_photo import densest_val_photo, worker_labels
from tools.crowd_finetune import build_found_set, count, photo_folds


def coord_image(h: int = 100, w: int = 200) -> np.ndarray:
    """(h, w, 3) uint8 with pixel (y, x) = (x, y, 7) (BGR): every crop pixel tells where it came from."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx, yy, np.full_like(xx, 7)], -1).astype(np.uint8)


def test_worker_rect_adds_the_margin_rounds_outwards_and_clips():
    # box (20.5, 10, 30, 20): 9.5 x 10 px; + 0.3 x 9.5 = 2.85 px left/right, 3 px up/down ->
    # floor(17.65) = 17, ceil(32.85) = 33, rows 7..23
    assert worker_rect((20.5, 10, 30, 20), (100, 200), 0.3) == (17, 7, 33, 23)
    # at the corner: (-3, -3, ...) clipped to 0
    assert worker_rect((0, 0, 10, 10), (100, 200), 0.3) == (0, 0, 13, 13)
    # a box that is outside the frame is dropped, as the worker drops it
    assert worker_rect((300, 10, 310, 20), (100, 200), 0.3) is None


def rgb255(x: np.ndarray, y: int, x_: int) -> tuple:
    """Pixel (y, x_) of a (3, S, S) RGB [0, 1] input, times 255 and rounded: (7, row, column) for coord_image."""
    return tuple(int(round(float(v) * 255)) for v in x[:, y, x_])


def test_worker_input_image_is_the_crop_stretched_to_the_input_size():
    img = coord_image()
    x = worker_input_image(img, (20.5, 10, 30, 20), 0.3, 64)  # crop columns 17..32, rows 7..22 (16 x 16 px)
    assert x.shape == (3, 64, 64) and x.dtype == np.float32
    # RGB of the BGR (column, row, 7) pixels; upsampling 4x (align_corners=False): corners = the crop's corners
    assert rgb255(x, 0, 0) == (7, 7, 17) and rgb255(x, -1, -1) == (7, 22, 32)
    # output column i samples source column (i + 0.5) / 4 - 0.5 (clamped at 0) of a crop whose values are
    # 17 + column, not rounded: i = 0..8 -> 17, 17, 17.125, 17.375, 17.625, 17.875, 18.125, 18.375, 18.625
    want = [17, 17, 17.125, 17.375, 17.625, 17.875, 18.125, 18.375, 18.625]
    assert np.allclose(x[2, 0, :9] * 255, want, atol=1e-3)
    # the stretch: a 30 x 10 crop becomes a square image, columns spread over the whole width
    y = worker_input_image(img, (50, 50, 74, 58), 0.125, 30)  # + 3 / 1 px -> columns 47..76, rows 49..58
    assert rgb255(y, 0, 0) == (7, 49, 47) and rgb255(y, -1, -1) == (7, 58, 76)
    assert worker_input_image(img, (300, 10, 310, 20), 0.3, 64) is None


def test_worker_input_image_is_the_workers_model_input():
    """Normalised, it is the worker's own input (Processor._to_input), also for a crop large enough for the worker's
    uint8 shrink."""
    from core.model import ModelMeta
    from core.preprocess import normalize
    from stream.config import WorkerConfig
    from stream.processor import Processor

    class FakeBackend:
        device, dtype = "cpu", torch.float32

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (300, 400, 3), np.uint8), (5, 5), 0)
    proc = Processor.__new__(Processor)  # only _to_input is used: no model
    proc.backend, proc.cfg = FakeBackend(), WorkerConfig(mode="faces", device="cpu", face_margin=0.3)
    proc.meta = ModelMeta("mobilenet_v2", ("with_mask", "without_mask"), 32)
    proc.input_size = (32, 32)
    for box in ((100.3, 50.2, 109.8, 61.0), (10, 10, 250, 280)):  # a 10 px face; a crop over 4 x 32^2 px
        x1, y1, x2, y2 = worker_rect(box, img.shape[:2], 0.3)
        want = proc._to_input([img[y1:y2, x1:x2]])
        got = normalize(torch.from_numpy(worker_input_image(img, box, 0.3, 32))[None], proc.meta.mean, proc.meta.std)
        assert torch.allclose(got, want, atol=1e-6)


def _photo_folder(tmp_path):
    """Two generated photos, their annotations and a crowd_eval-style events file."""
    data = tmp_path / "voc"
    (data / "images").mkdir(parents=True)
    img = coord_image()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(data / "images" / name), img)
    anns = [
        {"file": "images/a.png", "width": 200, "height": 100, "boxes": [
            {"label": "with_mask", "xyxy": [10, 10, 30, 30]},
            {"label": "without_mask", "xyxy": [100, 40, 110, 50]},
            {"label": "mask_weared_incorrect", "xyxy": [150, 60, 170, 80]},
        ]},
        {"file": "images/b.png", "width": 200, "height": 100, "boxes": [
            {"label": "without_mask", "xyxy": [50, 50, 70, 70]},
        ]},
    ]
    (data / "annotations.json").write_text(json.dumps(anns))
    ev = [
        {"type": "frame", "name": "a.png"},
        # IoU with (10,10,30,30): overlap 18x18 = 324 / (400 + 400 - 324) = 0.68 -> with_mask
        {"type": "detection", "name": "a.png", "box": [12, 12, 32, 32], "score": 0.9, "label": "without_mask"},
        # IoU with (100,40,110,50): 4 x 10 / (100 + 100 - 40) = 0.25 < 0.3 -> not matched, no row
        {"type": "detection", "name": "a.png", "box": [106, 40, 116, 50], "score": 0.8, "label": "without_mask"},
        # the mask_weared_incorrect face: matched, but not a two-class face -> no row
        {"type": "detection", "name": "a.png", "box": [150, 60, 170, 80], "score": 0.7, "label": "with_mask"},
        {"type": "frame", "name": "b.png"},
        # two boxes on one face: the higher score takes it (one to one); the other matches nothing
        {"type": "detection", "name": "b.png", "box": [51, 51, 71, 71], "score": 0.6, "label": "without_mask"},
        {"type": "detection", "name": "b.png", "box": [50, 50, 70, 70], "score": 0.95, "label": "with_mask"},
    ]
    (tmp_path / "ev.jsonl").write_text("".join(json.dumps(e) + "\n" for e in ev))
    return data, tmp_path / "ev.jsonl"


def test_build_found_set_labels_each_found_face_by_its_annotation(tmp_path):
    data, ev = _photo_folder(tmp_path)
    s = build_found_set(data, "all", ev, margin=0.3, size=32)
    assert len(s) == 2 and s.images.shape == (2, 3, 32, 32)
    # the annotation's label, not the detector's: with_mask on a.png, without_mask on b.png
    assert s.labels.tolist() == [0, 1] and s.files == ["images/a.png", "images/b.png"]
    assert s.sizes == ["16-32px", "16-32px"]  # the ANNOTATED face's size (20 px), as crowd_eval counts
    assert np.allclose(s.det_px, [20.0, 20.0])
    # the image is the worker's crop of the DETECTOR box: (12,12,32,32) + 6 px -> columns/rows 6..37
    assert rgb255(s.images[0], 0, 0) == (7, 6, 6) and rgb255(s.images[0], -1, -1) == (7, 37, 37)
    # b.png: the 0.95 box (50,50,70,70) won -> 44..75
    assert rgb255(s.images[1], 0, 0) == (7, 44, 44) and rgb255(s.images[1], -1, -1) == (7, 75, 75)


def test_photo_folds_keep_duplicate_groups_together():
    files = ["p0", "p1", "p1", "p2", "p3", "p4", "p5"]
    folds = photo_folds(files, {"p1": 7, "p4": 7, "p0": 1}, 3)
    assert set(folds) == {"p0", "p1", "p2", "p3", "p4", "p5"} and set(folds.values()) == {0, 1, 2}
    assert folds["p1"] == folds["p4"]
    with pytest.raises(SystemExit, match="--folds 3"):
        photo_folds(["p0", "p1"], {}, 3)


def test_count_by_size_and_class():
    c = count(np.array([0, 1, 1, 0, 1]), np.array([0, 0, 1, 1, 1]), ["<16px", "<16px", "16-32px", ">=32px", "<16px"])
    assert c == {"n": 5, "wrong": 2, "wrong <16px": 1, "wrong 16-32px": 0, "wrong >=32px": 1,
                 "unmasked right": 2, "unmasked": 3, "masked right": 1, "masked": 2}



@pytest.mark.timeout(300)
def test_found_set_gives_the_workers_labels_on_a_real_photo(shared_data, tmp_path):
    """One val photo with its annotated boxes as the 'detector': the found set's images, normalised and classified,
    get exactly the labels the worker (Processor, face_margin 0.3) gives."""
    from core.preprocess import normalize
    from stream.config import WorkerConfig
    from stream.processor import create_backend

    photo = densest_val_photo(shared_data)
    cfg = WorkerConfig(mode="faces", device="cpu", max_faces=len(photo.boxes), face_margin=0.3)
    backend = create_backend(cfg)
    worker = worker_labels(photo, backend, cfg)
    s = build_found_set(photo.data, "val", photo.events(tmp_path / "events.jsonl", label="x"), margin=0.3, size=224)
    assert len(s) == len(photo.boxes)
    x = normalize(torch.from_numpy(s.images), backend.meta.mean, backend.meta.std)
    with torch.no_grad():
        mine = backend.forward(x)[0].float().argmax(1).tolist()
    assert len(worker) == len(photo.boxes) and [worker[c] for c in photo.clipped()] == mine


def test_bad_options_are_user_errors(tmp_path, capsys):
    from tools.crowd_finetune import main

    ev = tmp_path / "ev.jsonl"
    ev.write_text("")
    for argv, msg in ((["--train-events", str(tmp_path / "nope.jsonl"), "--val-events", str(ev)], "nope.jsonl: no such"),
                      (["--train-events", str(ev), "--val-events", str(ev), "--data", str(tmp_path)], "annotations.json")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
