"""Small-face label correction experiment: a logistic re-calibration of the shipped classifier (research;
docs/CROWD.md, issue 18).

For the faces a ``tools.crowd_eval`` run found whose DETECTOR box is under ``--below`` px (sqrt of the area; the
only size known at run time), the crowd preset's crop (``margin:0.3``) is classified as the worker does, and a
logistic regression on 3 features -- the classifier's log-odds of without_mask, log2 of the box size, and their
product -- replaces the argmax. The shipped weights do not change.

Training rows: the TRAIN side's found faces (``--train-events``) plus annotated train faces of 16 px and up, their
boxes jittered (+-15% of the size) and their crops shrunk to a small size (8-16 px face), as a small face would be
seen. The classifier itself was trained on these photos, so its logits there are optimistic (too confident);
the head has only 4 parameters, is chosen by 5 folds grouped by photo, and is then checked on the VAL side's
found faces, which the classifier never trained on.

    nice python -m tools.small_face_calib --train-events out/train0/events-crowd.jsonl \\
        --val-events out/val0/events-crowd.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.crop_sweep import margin_crop, matched_faces  # noqa: E402
from tools.crowd_eval import face_size  # noqa: E402
from tools.detector_recall import DEFAULT_DATA  # noqa: E402

MARGIN = 0.3
CHOSEN_C = 0.1  # best 5-fold CV on train (shrunk rows on; ties with 0.01)


def features(logodds: np.ndarray, size: np.ndarray) -> np.ndarray:
    """(n, 3) float64: log-odds of without_mask (n,), log2 of the detector box size in px (n,), their product."""
    ls = np.log2(np.maximum(np.asarray(size, np.float64), 1.0))
    lo = np.asarray(logodds, np.float64)
    return np.stack([lo, ls, lo * ls], 1)


def log_odds(proc, crops: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """log p(without_mask) - log p(with_mask) (n,) of the worker's classifier on BGR ``crops``."""
    import torch

    wi, mi = proc.class_names.index("without_mask"), proc.class_names.index("with_mask")
    out = []
    for i in range(0, len(crops), batch):
        x = proc._to_input([np.ascontiguousarray(c) for c in crops[i : i + batch]])
        with torch.no_grad():
            lp = torch.log_softmax(proc.backend.forward(x)[0].float(), 1)
        out.append((lp[:, wi] - lp[:, mi]).cpu().numpy())
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


def rows_found(proc, data: Path, split: str, events: Path, below: float, images: dict):
    """(log-odds, detector size, truth 1=without_mask, photo) of found faces with detector box < ``below``."""
    faces = [f for f in matched_faces(data, split, events) if face_size(f[1]) < below]
    crops = []
    for f, box, _, _ in faces:
        if f not in images:
            images[f] = cv2.imread(str(data / f))
        crops.append(margin_crop(images[f], box, MARGIN))
    lo = log_odds(proc, crops)
    return (lo, np.array([face_size(f[1]) for f in faces]), np.array([f[2] == "without_mask" for f in faces], int),
            np.array([f[0] for f in faces]))


def rows_shrunk(proc, data: Path, split: str, images: dict, seed: int = 0, per_face: int = 2):
    """Annotated faces >= 16 px of ``split``, box jittered and crop shrunk so the face is 8-16 px."""
    import json

    from tools.detector_recall import split_files

    rng = np.random.default_rng(seed)
    keep = split_files(data, split)
    crops, sizes, truth, photos = [], [], [], []
    for a in json.loads((data / "annotations.json").read_text()):
        if keep is not None and a["file"] not in keep:
            continue
        for b in a["boxes"]:
            if b["label"] not in ("with_mask", "without_mask") or face_size(b["xyxy"]) < 16:
                continue
            if a["file"] not in images:
                images[a["file"]] = cv2.imread(str(data / a["file"]))
            img = images[a["file"]]
            x1, y1, x2, y2 = b["xyxy"]
            s = face_size(b["xyxy"])
            for _ in range(per_face):
                j = rng.uniform(-0.15, 0.15, 4) * s
                box = [x1 + j[0], y1 + j[1], max(x2 + j[2], x1 + j[0] + 2), max(y2 + j[3], y1 + j[1] + 2)]
                c = margin_crop(img, box, MARGIN)
                target = rng.uniform(8, 16)
                k = target / face_size(box)
                h, w = max(2, round(c.shape[0] * k)), max(2, round(c.shape[1] * k))
                crops.append(cv2.resize(c, (w, h), interpolation=cv2.INTER_AREA))
                sizes.append(target)
                truth.append(int(b["label"] == "without_mask"))
                photos.append(a["file"])
    return log_odds(proc, crops), np.array(sizes), np.array(truth), np.array(photos)


def fit(x: np.ndarray, y: np.ndarray, c: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=1000).fit(x, y)


def score(pred: np.ndarray, y: np.ndarray) -> str:
    """'wrong/n, unmasked caught u/U, masked right m/M'."""
    return (f"{int((pred != y).sum())}/{len(y)} wrong; without_mask right {int(((pred == 1) & (y == 1)).sum())}/"
            f"{int(y.sum())}; with_mask right {int(((pred == 0) & (y == 0)).sum())}/{int((y == 0).sum())}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--train-events", type=Path, required=True)
    p.add_argument("--val-events", type=Path, required=True)
    p.add_argument("--test-events", type=Path, help="ONE final reading only")
    p.add_argument("--below", type=float, default=16.0, help="detector box size (px) under which the head applies")
    args = p.parse_args(argv)
    from sklearn.model_selection import GroupKFold

    from stream.config import WorkerConfig
    from stream.processor import Processor, create_backend

    cfg = WorkerConfig(mode="faces", device="cpu")
    proc = Processor(create_backend(cfg), cfg, inference_only=True)
    images: dict = {}
    lo_f, s_f, y_f, g_f = rows_found(proc, args.data, "train", args.train_events, args.below, images)
    lo_s, s_s, y_s, g_s = rows_shrunk(proc, args.data, "train", images)
    images.clear()
    print(f"train: {len(y_f)} found faces < {args.below:g} px, {len(y_s)} shrunk annotated faces")
    print(f"train found, argmax: {score((lo_f > 0).astype(int), y_f)}")
    print(f"train shrunk, argmax: {score((lo_s > 0).astype(int), y_s)}")
    for use_shrunk in (False, True):
        lo = np.concatenate([lo_f, lo_s]) if use_shrunk else lo_f
        s = np.concatenate([s_f, s_s]) if use_shrunk else s_f
        y = np.concatenate([y_f, y_s]) if use_shrunk else y_f
        g = np.concatenate([g_f, g_s]) if use_shrunk else g_f
        found = np.r_[np.ones(len(y_f), bool), np.zeros(len(y) - len(y_f), bool)]
        x = features(lo, s)
        for c in (0.01, 0.1, 1.0):
            pred = np.zeros(len(y), int)
            for tr, te in GroupKFold(5).split(x, y, g):
                pred[te] = fit(x[tr], y[tr], c).predict(x[te])
            print(f"CV (shrunk={use_shrunk}, C={c:g}) on train found faces: {score(pred[found], y_f)}"
                  f" | argmax {score((lo_f > 0).astype(int), y_f)}")
    lo_v, s_v, y_v, _ = rows_found(proc, args.data, "val", args.val_events, args.below, images)
    for use_shrunk in (False, True):
        x = features(np.concatenate([lo_f, lo_s]) if use_shrunk else lo_f,
                     np.concatenate([s_f, s_s]) if use_shrunk else s_f)
        y = np.concatenate([y_f, y_s]) if use_shrunk else y_f
        m = fit(x, y, CHOSEN_C)
        print(f"val (shrunk={use_shrunk}, C={CHOSEN_C:g}): {score(m.predict(features(lo_v, s_v)), y_v)}"
              f" | argmax {score((lo_v > 0).astype(int), y_v)}; coef {m.coef_.ravel().round(3)} b {m.intercept_}")
    if args.test_events:
        lo_t, s_t, y_t, _ = rows_found(proc, args.data, "test", args.test_events, args.below, images)
        m = fit(features(np.concatenate([lo_f, lo_s]), np.concatenate([s_f, s_s])), np.concatenate([y_f, y_s]), CHOSEN_C)
        print(f"test (shrunk=True, C={CHOSEN_C:g}): {score(m.predict(features(lo_t, s_t)), y_t)} | argmax {score((lo_t > 0).astype(int), y_t)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
