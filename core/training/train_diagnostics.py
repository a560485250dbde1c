"""Shortcut and edge-case probes of a trained classifier, on held-out (test-side) data only.

- ``crops_by_source``: facemask_crops test images split by upstream origin. Numeric files are
  mostly tight face crops (both classes); named files are with_mask web images, often wide shots.
  A model that learned "tight framing = no mask" fails on tight with_mask crops.
- ``zoomed_out``: tight test crops shrunk to ``z`` of the side and edge-padded back (a face in a
  wider frame). The label must not change with framing.
- ``mask_weared_incorrect``: what the two-class model says about the faces it never trained on.
- ``voc_by_face_size``: VOC face and context crops bucketed by the face box's shorter side in the
  original photo (most VOC faces are tiny: median 22 px; a 6 px face carries little evidence).
- ``resolution_probe``: the context crops of faces of 32 px and more, re-rendered as if the photo had been
  taken with the face at ``t`` px (window down-sampled, then resized back as the crop builder resizes), next to
  the real faces of about that size, once clean and once JPEG-coded at the small size. Same faces and labels,
  only the pixels change: it separates "few pixels", "compressed few pixels" and "different faces".

Run on a checkpoint: ``python -m core.training.train_diagnostics CKPT [--update]`` (``--update`` stores
the result in the checkpoint's metrics under ``test_diagnostics``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.data.augment import jpeg_bgr
from core.data.context_crops import image_rng, make_context_crops
from core.data.face_crops import read_crops_manifest, voc_face_crops
from core.data.splits import voc_split
from core.data.training_set import CLASS_NAMES, EVAL_CONTEXT_SEED, DataSpec, LabeledSet
from core.data.voc import load_image, read_duplicate_groups, read_voc
from core.model import CamModel
from core.training.train_metrics import binary_metrics

ZOOMS = (0.6, 0.4)
SIZE_BUCKETS = ((0, 16), (16, 32), (32, 10**9))
PROBE_FACE_PX = (24, 16, 12, 9, 6)  # simulated face sizes of the resolution probe
PROBE_FROM_PX = 32  # faces at least this large (photo pixels) are re-rendered smaller
PROBE_JPEG_QUALITY = 60  # the probe's second rendering: JPEG-coded at the small size, as a web photo is


def face_size_buckets(face_px: np.ndarray) -> dict[str, np.ndarray]:
    """Boolean masks (N,) per face-size bucket name (``0-16px``, ``16-32px``, ``>=32px``) of the
    faces' shorter sides ``face_px`` (N,) in the photo; NaN belongs to no bucket."""
    px = np.asarray(face_px, dtype=np.float64)
    return {f"{lo}-{hi}px" if hi < 10**9 else f">={lo}px": (px >= lo) & (px < hi) for lo, hi in SIZE_BUCKETS}


def _predict(model: CamModel, images: np.ndarray, device: torch.device, batch: int = 128) -> np.ndarray:
    from core.training.train_input import _predict as pred
    from core.training.train_input import _to_input

    return pred(lambda i: model(_to_input(torch.from_numpy(images[i]).to(device), model.meta, None, None))[0],
                len(images), batch, device).argmax(1)


def zoom_out(img: np.ndarray, z: float) -> np.ndarray:
    """(S, S, 3) -> same size, content shrunk to ``z`` of the side, centred, edges replicated around it."""
    s = img.shape[0]
    k = max(1, int(round(s * z)))
    small = cv2.resize(img, (k, k), interpolation=cv2.INTER_AREA)
    t = (s - k) // 2
    return cv2.copyMakeBorder(small, t, s - k - t, t, s - k - t, cv2.BORDER_REPLICATE)


def as_if_face_px(window: np.ndarray, face_win_px: float, target_px: float, jpeg_quality: int | None = None) -> np.ndarray:
    """Re-render a context window as if its face's shorter side had been ``target_px`` in the photo.

    The window (S, S, 3) shows a face whose shorter side is ``face_win_px`` window pixels. Shrinking the
    photo so that the face is ``target_px`` px leaves the window ``S * target_px / face_win_px`` photo pixels
    wide: the window is area-down-sampled to that side and resized back up with bilinear interpolation, as
    ``core.data._geometry.cut_window`` resizes windows smaller than ``S``. No-op when that side is >= S.
    With ``jpeg_quality`` the small window is JPEG-coded before it is resized back, as a photo stores it.
    """
    s = window.shape[0]
    k = max(1, int(round(s * target_px / face_win_px)))
    if k >= s:
        return window
    small = cv2.resize(window, (k, k), interpolation=cv2.INTER_AREA)
    if jpeg_quality is not None:
        small = jpeg_bgr(small, jpeg_quality)
    return cv2.resize(small, (s, s), interpolation=cv2.INTER_LINEAR)


def diagnostics(model: CamModel, spec: DataSpec, test: LabeledSet, device: torch.device) -> dict:
    """The probes above, for ``test`` = the ``test`` set built from ``spec``."""
    out: dict = {}
    model = model.to(device).eval()
    src = {it.file: it.sub_source for it in read_crops_manifest(spec.crops_root)}
    is_crop = test.domains == 0
    named = np.array([src.get(f, "").startswith("upstream named") for f in test.files]) & is_crop
    numeric = is_crop & ~named
    pred = _predict(model, test.images, device)
    out["crops_by_source"] = {"numeric_tight": binary_metrics(pred[numeric], test.labels[numeric]),
                              "named_web_with_mask": binary_metrics(pred[named], test.labels[named])}
    tight = test.images[numeric]
    out["zoomed_out"] = {}
    for z in ZOOMS:
        zoomed = np.stack([zoom_out(im, z) for im in tight]) if len(tight) else tight
        out["zoomed_out"][f"numeric_tight_x{z}"] = binary_metrics(_predict(model, zoomed, device), test.labels[numeric])
    ims = read_voc(spec.voc_root)
    test_ims = voc_split(ims, read_duplicate_groups(spec.voc_root), spec.voc_seed)["test"]
    faces, ctx = [], []
    for vimg in test_ims:
        if any(b.label == "mask_weared_incorrect" for b in vimg.boxes):
            img = load_image(spec.voc_root, vimg)
            faces += [c.image for c in voc_face_crops(img, vimg, spec.size, spec.face_margin, ("mask_weared_incorrect",))]
            ctx += [c.image for c in make_context_crops(img, vimg, image_rng(EVAL_CONTEXT_SEED, vimg.file), spec.size,
                                                        labels=("mask_weared_incorrect",))]
    out["voc_by_face_size"], out["resolution_probe"] = _by_face_size_and_probe(model, spec, test_ims, device)
    inc = {}
    for name, arr in (("voc_face", faces), ("voc_context", ctx)):
        if arr:
            p = _predict(model, np.stack(arr), device)
            inc[name] = {"n": len(arr), "predicted_without_mask": float((p == CLASS_NAMES.index("without_mask")).mean())}
    out["mask_weared_incorrect"] = inc
    return out


def _by_face_size_and_probe(model: CamModel, spec: DataSpec, test_ims, device: torch.device) -> tuple[dict, dict]:
    """``(voc_by_face_size, resolution_probe)`` for the VOC images ``test_ims``: the probe reuses the context
    crops (and their predictions) that the face-size table scores."""
    rows: dict[str, list] = {"voc_face": [], "voc_context": []}
    large: list[tuple[np.ndarray, int, float]] = []  # context window, label, face's shorter side in the window
    for vimg in test_ims:
        if not any(b.label in CLASS_NAMES for b in vimg.boxes):
            continue
        img = load_image(spec.voc_root, vimg)
        usable = [b for b in vimg.boxes if b.label in CLASS_NAMES]
        for b, c in zip(usable, voc_face_crops(img, vimg, spec.size, spec.face_margin, CLASS_NAMES)):
            rows["voc_face"].append((c.image, CLASS_NAMES.index(c.label), min(b.xyxy[2] - b.xyxy[0], b.xyxy[3] - b.xyxy[1])))
        for c in make_context_crops(img, vimg, image_rng(EVAL_CONTEXT_SEED, vimg.file), spec.size, labels=CLASS_NAMES):
            rows["voc_context"].append((c.image, CLASS_NAMES.index(c.label), c.face_px))
            if c.face_px >= PROBE_FROM_PX:
                large.append((c.image, CLASS_NAMES.index(c.label), min(c.box[2] - c.box[0], c.box[3] - c.box[1])))
    out, scored = {}, {}
    for name, r in rows.items():
        if not r:
            continue
        pred = _predict(model, np.stack([x[0] for x in r]), device)
        lab = np.array([x[1] for x in r])
        px = np.array([x[2] for x in r])
        out[name] = {bucket: binary_metrics(pred[m], lab[m]) for bucket, m in face_size_buckets(px).items()}
        scored[name] = (pred, lab, px)
    return out, _resolution_probe(model, large, scored.get("voc_context"), device)


def _resolution_probe(model: CamModel, large: list, real: tuple | None, device: torch.device) -> dict:
    """``large``: (window, label, face side in window px) of the big faces; ``real``: (pred, label, face px)
    of every context crop, already scored."""
    if not large:
        return {}
    lab = np.array([x[1] for x in large])
    probe: dict = {"n_faces": len(large), "from_px": PROBE_FROM_PX,
                   "original": binary_metrics(_predict(model, np.stack([x[0] for x in large]), device), lab)}
    for t, lower in zip(PROBE_FACE_PX, PROBE_FACE_PX[1:] + (0,)):
        row = {}
        for key, q in (("as_if", None), (f"as_if_jpeg{PROBE_JPEG_QUALITY}", PROBE_JPEG_QUALITY)):
            shrunk = np.stack([as_if_face_px(im, fw, t, q) for im, _, fw in large])
            row[key] = binary_metrics(_predict(model, shrunk, device), lab)
        if real is not None:  # the real faces just below t px (and at least the next probe size)
            pred, real_lab, px = real
            m = (px >= lower) & (px < t)
            if m.any():
                row["real"] = dict(binary_metrics(pred[m], real_lab[m]), range_px=[float(lower), float(t)])
        probe[f"{t}px"] = row
    return probe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m core.training.train_diagnostics", description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--update", action="store_true", help="store the result in the checkpoint (same weights, same precision)")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    ck = load_checkpoint(a.checkpoint)
    ds = dict(ck.extra["data_spec"])
    args = ck.extra["train_args"]
    spec = DataSpec(args["voc_root"], args["crops_root"], **ds)
    from core.data.training_set import build_set

    test = build_set(spec, "test")
    res = diagnostics(ck.model, spec, test, torch.device(a.device))
    print(json.dumps(res, indent=2))
    if a.update:
        blob = torch.load(a.checkpoint, map_location="cpu", weights_only=True)
        half = any(v.dtype == torch.float16 for v in blob["state_dict"].values())
        metrics = dict(ck.metrics, test_diagnostics=res)
        save_checkpoint(a.checkpoint, ck.model, ck.meta, metrics=metrics, data_fingerprint=ck.data_fingerprint,
                        thresholds=ck.thresholds, extra=ck.extra, half=half)
    return 0


if __name__ == "__main__":
    sys.exit(main())
