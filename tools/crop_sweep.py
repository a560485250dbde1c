"""Relabel the faces a crowd_eval run found, under other classifier crops (research; docs/CROWD.md).

``tools/crowd_eval.py`` writes each config's events; every detection event carries the photo's name and the
detector's face box. This tool matches those boxes to the annotated faces as crowd_eval does (IoU >= 0.3, one
to one), cuts each matched face again with every crop geometry of ``--crops``, runs the shipped classifier on
the crops exactly as the worker does (``Processor._to_input``, the backend's forward, argmax), and counts the
faces labelled wrong, by the annotated face's size. The boxes, and so the recall, are those of the run; only the
crop changes.
The ``margin:0.15`` crop is the worker's own (``core.frame_boxes.crop_rects``) and reproduces the run's labels.

    nice python -m tools.crowd_eval --split val --configs crowd --out out/val0
    nice python -m tools.crop_sweep --split val --events out/val0/events-crowd.jsonl \\
        --crops margin:0.15,margin:0.2,margin:0.3,square:1.4,square:2.0 --flip

Crops: ``margin:M`` = the face box + M x its width / height per side, clipped to the photo (what
``worker.face_margin`` does); ``square:K`` = a square of K x the box's longer side around its centre, the part
outside the photo filled by replicating its edge (as the classifier's training crops). Choose on ``--split
val``; ``test`` is for a final report only.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.data._geometry import cut_window  # noqa: E402
from core.frame_boxes import crop_rects  # noqa: E402
from tools.crowd_eval import SIZES, TWO_CLASS, face_size, match_photo, read_events, size_name  # noqa: E402
from tools.detector_recall import DEFAULT_DATA, SPLITS, split_files  # noqa: E402


def margin_crop(image: np.ndarray, box, margin: float) -> np.ndarray:
    """The worker's crop: ``box`` (x1, y1, x2, y2) + ``margin`` x its width / height per side, rounded
    outwards and clipped to the (H, W, 3) ``image``; a view (h, w, 3)."""
    (rect,), _ = crop_rects(np.asarray(box, np.float32).reshape(1, 4), image.shape[:2], margin)
    x1, y1, x2, y2 = (int(v) for v in rect)
    return image[y1:y2, x1:x2]


def square_crop(image: np.ndarray, box, k: float) -> np.ndarray:
    """A square of side round(k x the box's longer side) (at least 2 px) centred on ``box``, edge-replicated
    where it leaves the (H, W, 3) ``image``; (side, side, 3) uint8."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(2, int(round(max(x2 - x1, y2 - y1) * k)))
    x0, y0 = int(math.floor((x1 + x2) / 2 - side / 2)), int(math.floor((y1 + y2) / 2 - side / 2))
    return cut_window(image, x0, y0, side, side)


def parse_crops(text: str) -> list[tuple[str, float]]:
    """``margin:0.15,square:1.4`` -> [("margin", 0.15), ("square", 1.4)]; a bad entry exits naming it."""
    out = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        kind, _, val = item.partition(":")
        try:
            v = float(val)
        except ValueError:
            v = float("nan")
        ok = (kind == "margin" and 0.0 <= v <= 1.0) or (kind == "square" and 1.0 <= v <= 8.0)
        if not ok:
            raise SystemExit(f"--crops: {item!r} must be margin:M with M in [0, 1] or square:K with K in [1, 8]")
        out.append((kind, v))
    if not out:
        raise SystemExit("--crops: give at least one crop")
    return out


def cut(image: np.ndarray, box, crop: tuple[str, float]) -> np.ndarray:
    """One crop of :func:`parse_crops` around ``box``."""
    kind, v = crop
    return margin_crop(image, box, v) if kind == "margin" else square_crop(image, box, v)


def wrong_by_size(pred: np.ndarray, truth: np.ndarray, sizes: list[str]) -> dict[str, tuple[int, int]]:
    """(wrong, total) over all faces (key ``all``) and per size name of ``tools.crowd_eval.SIZES``."""
    pred, truth = np.asarray(pred), np.asarray(truth)
    out = {"all": (int((pred != truth).sum()), len(truth))}
    for name, _, _ in SIZES:
        m = np.array([s == name for s in sizes], bool)
        out[name] = (int((pred[m] != truth[m]).sum()), int(m.sum()))
    return out


def relabel(proc, crops: list[np.ndarray], flip: bool = False, batch: int = 32) -> np.ndarray:
    """Class indices (n,) the worker's classifier gives the BGR ``crops`` (each (h, w, 3) uint8): the worker's
    own input path (``stream.processor.Processor._to_input``), the backend's forward, argmax of the softmax (with
    ``flip``: of the mean of the crop's and its mirror's probabilities)."""
    import torch

    out = []
    for i in range(0, len(crops), batch):
        x = proc._to_input([np.ascontiguousarray(c) for c in crops[i : i + batch]])
        with torch.no_grad():
            p = torch.softmax(proc.backend.forward(x)[0].float(), 1)
            if flip:
                p = (p + torch.softmax(proc.backend.forward(x.flip(-1))[0].float(), 1)) / 2
        out.append(p.argmax(1).cpu().numpy())
    return np.concatenate(out).astype(np.int64) if out else np.zeros(0, np.int64)


def matched_faces(data: Path, split: str, events: Path) -> list[tuple[str, list[float], str, list[float]]]:
    """(photo file, detector box, annotated two-class label, annotated box) of every face the run found."""
    keep = split_files(data, split)
    anns = [a for a in json.loads((data / "annotations.json").read_text()) if keep is None or a["file"] in keep]
    found = read_events(events)
    names = {Path(a["file"]).name for a in anns}
    if not names & set(found):
        raise SystemExit(f"{events}: no photo of the {split} side in it (was it written with --split {split}?)")
    out = []
    for a in anns:
        dets = found.get(Path(a["file"]).name, [])
        for i, g in enumerate(match_photo(a, dets)):
            if g >= 0 and a["boxes"][g]["label"] in TWO_CLASS:
                out.append((a["file"], dets[i]["box"], a["boxes"][g]["label"], a["boxes"][g]["xyxy"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="facemask_voc folder (annotations.json + images/)")
    p.add_argument("--split", choices=SPLITS, default="val", help="side of THE split the events were run on")
    p.add_argument("--events", type=Path, required=True, help="events file of a crowd_eval run (events-NAME.jsonl)")
    p.add_argument("--crops", default="margin:0.15,margin:0.2,margin:0.25,margin:0.3,margin:0.4,square:1.4",
                   help="comma-separated margin:M / square:K crops")
    p.add_argument("--flip", action="store_true", help="also average each crop's probabilities with its mirror's")
    args = p.parse_args(argv)
    crops = parse_crops(args.crops)
    if not args.events.is_file():
        raise SystemExit(f"{args.events}: no such events file")
    if not (args.data / "annotations.json").is_file():
        raise SystemExit(f"{args.data / 'annotations.json'} not found (pass --data)")

    from stream.config import WorkerConfig
    from stream.processor import Processor, create_backend

    faces = matched_faces(args.data, args.split, args.events)
    cfg = WorkerConfig(mode="faces", device="cpu")
    proc = Processor(create_backend(cfg), cfg, inference_only=True)
    truth = np.array([proc.class_names.index(f[2]) for f in faces], np.int64)
    sizes = [size_name(f[3]) for f in faces]  # by the annotated box, as crowd_eval
    n_small = sum(face_size(f[3]) < 16 for f in faces)
    print(f"{len(faces)} found two-class faces ({n_small} under 16 px) in {args.events}")
    images: dict[str, np.ndarray] = {}

    head = " | ".join(f"{n} wrong" for n, _, _ in SIZES)
    print(f"\n| crop | flip | wrong (all) | {head} | label right |\n|---|---|---:|" + "---:|" * (len(SIZES) + 1))
    for crop in crops:
        batch = []
        for f, box, _, _ in faces:
            if f not in images:
                images[f] = cv2.imread(str(args.data / f))
            batch.append(cut(images[f], box, crop))
        for flip in (False, True) if args.flip else (False,):
            pred = relabel(proc, batch, flip)
            w = wrong_by_size(pred, truth, sizes)
            cells = " | ".join(f"{w[n][0]}/{w[n][1]}" for n, _, _ in SIZES)
            right = 100.0 * (1 - w["all"][0] / max(w["all"][1], 1))
            print(f"| {crop[0]}:{crop[1]:g} | {'yes' if flip else 'no'} | {w['all'][0]}/{w['all'][1]} | {cells} | "
                  f"{right:.1f}% |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
