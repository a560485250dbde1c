"""``maskstream explain IMAGE...``: label, score, boxes and an overlay PNG per image."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from stream.errors import UserError

NAME = "explain"
ORDER = 10
HELP = "classify images and explain each decision with a saliency map and boxes"
DESCRIPTION = (
    "Classify each IMAGE as with_mask / without_mask, compute its saliency map (HayCAM+ by default) "
    "and the boxes cut from it. Writes OUT/<image>_<method>.png overlays (map blended over the image, "
    "boxes drawn) and prints one line per image, or JSON with --json. With --mode faces a face detector "
    "finds every face first and each face gets its own class, map and box (OUT/<image>_<method>_faces.png)."
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of ``maskstream explain``."""
    from core.cams import method_names

    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--method", default="haycam+", help=f"map method, one of: {', '.join(method_names())} "
                   "(haycam+hr: its variant as calibrated in the checkpoint)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint (default: the shipped MobileNetV2 model)")
    p.add_argument("--out", default="out/explain", help="folder for overlay PNGs (and maps)")
    p.add_argument("--json", action="store_true", help="print results as JSON instead of text")
    p.add_argument("--save-maps", action="store_true", help="also write <image>_<method>_raw.npy (h×w, before "
                   "normalisation) and _map.npy (H×W in [0,1], image size)")
    p.add_argument("--threshold", default=None, help="box threshold: fraction:0.5, percentile:90 or otsu "
                   "(default: the checkpoint's calibrated threshold for the method, else fraction:0.5)")
    p.add_argument("--target", default=None, help="class name to explain (default: the predicted class)")
    p.add_argument("--device", default="cpu", help="torch device: auto, cpu, cuda, cuda:N")
    p.add_argument("--mode", choices=("frame", "faces"), default="frame",
                   help="frame: one class and map for the whole image; faces: detect faces, then classify and "
                   "explain each (as maskstream run --mode faces; every --method works in both)")
    from core.detect import DEFAULT, DETECTORS

    p.add_argument("--detector", choices=list(DETECTORS), default=None,
                   help=f"face detector for --mode faces (default: {DEFAULT}, as maskstream run)%(default).0s")


def parse_threshold(text: str):
    """``fraction:0.5`` / ``percentile:90`` / ``otsu`` -> core.boxes.Threshold (UserError when malformed)."""
    from core.boxes import Threshold

    mode, _, value = text.partition(":")
    try:
        return Threshold(mode=mode, value=float(value) if value else 0.5)
    except ValueError as exc:
        raise UserError(f"--threshold {text!r}: {exc}") from None


def read_image(path: str) -> np.ndarray:
    """BGR uint8 image, or UserError naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"image {path}: no such file")
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None or img.size == 0:
        raise UserError(f"image {path}: cannot be decoded as an image")
    return img


def overlay(image: np.ndarray, heat: np.ndarray, boxes: list, label: str, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] map (image size) over a BGR image and draw the boxes."""
    colored = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    out = cv2.addWeighted(image, 1 - alpha, colored, alpha, 0)
    color = (0, 200, 0) if label == "with_mask" else (0, 0, 230)
    for b in boxes:
        x1, y1, x2, y2 = (int(round(v)) for v in b.xyxy)
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 2)
    return out


def run(args: argparse.Namespace) -> int:
    """Explain each image; returns the exit code."""

    from core import explain
    from core.backends.base import resolve_device
    from core.boxes import Threshold
    from core.cams import MODEL_METHODS, check_method
    from core.checkpoint import load_checkpoint
    from core.localization import stored_threshold, threshold_to_dict
    from core.preprocess import images_to_input

    try:
        check_method(args.method)
    except ValueError as exc:
        raise UserError(str(exc)) from None
    images = [read_image(p) for p in args.images]
    ckpt = load_checkpoint(args.checkpoint)
    meta = ckpt.meta
    target = None
    if args.target is not None:
        if args.target not in meta.class_names:
            raise UserError(f"--target {args.target!r}: not a class of this model ({', '.join(meta.class_names)})")
        target = meta.class_names.index(args.target)
    try:  # calibrated on val by `maskstream eval --calibrate`
        stored = stored_threshold(ckpt.thresholds, args.method, str(ckpt.path))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    if args.threshold:
        spec = parse_threshold(args.threshold)
    elif stored is not None:
        spec = stored.threshold
    else:
        spec = Threshold()
    options = dict(stored.options) if stored is not None and args.method in MODEL_METHODS else None
    try:
        device = resolve_device(args.device, strict=True)
        model = ckpt.model.to(device)
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise UserError(f"--device {args.device}: {exc}") from None
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    if args.mode == "faces":
        from stream.cli.explain_faces import explain_faces, print_text

        records = explain_faces(args, images, ckpt, model, spec, target, out_dir, options)
        if args.json:
            json.dump(records, sys.stdout, indent=2)
            print()
        else:
            print_text(records)
        return 0
    x = images_to_input(images, meta, device)
    try:
        res = explain(model, x, args.method, target, threshold=spec, options=options)
    except ValueError as exc:  # e.g. stored options this model cannot take
        raise UserError(f"--method {args.method}: {exc}") from None
    probs = res.probs.cpu()
    maps = res.maps.cpu().numpy()
    safe_method = args.method.replace("+", "plus")
    records = []
    for i, (path, img) in enumerate(zip(args.images, images)):
        h, w = img.shape[:2]
        s = meta.input_size
        label = meta.class_names[int(res.labels[i])]
        boxes = [b.scaled(w / s, h / s) for b in res.boxes[i]]
        heat = cv2.resize(maps[i], (w, h), interpolation=cv2.INTER_LINEAR)
        stem = Path(path).stem
        png = out_dir / f"{stem}_{safe_method}.png"
        cv2.imwrite(str(png), overlay(img, heat, boxes, label))
        rec = {
            "image": str(path),
            "label": label,
            "score": float(probs[i, int(res.labels[i])]),
            "probs": {c: float(probs[i, k]) for k, c in enumerate(meta.class_names)},
            "method": args.method,
            "explained_class": meta.class_names[int(res.target[i])],
            "threshold": threshold_to_dict(spec),
            "boxes": [{"xyxy": [round(v, 1) for v in b.xyxy], "score": round(b.score, 4)} for b in boxes],
            "degenerate": bool(res.degenerate[i]),
            "overlay": str(png),
        }
        if res.n_components is not None:
            rec["n_components"] = int(res.n_components[i])
        if options:
            rec["options"] = options
        if args.save_maps:
            np.save(out_dir / f"{stem}_{safe_method}_raw.npy", res.raw_maps[i].cpu().numpy())
            np.save(out_dir / f"{stem}_{safe_method}_map.npy", heat.astype(np.float32))
            rec["maps"] = [str(out_dir / f"{stem}_{safe_method}_raw.npy"), str(out_dir / f"{stem}_{safe_method}_map.npy")]
        records.append(rec)
    if args.json:
        json.dump(records, sys.stdout, indent=2)
        print()
    else:
        for r in records:
            boxes = " ".join(f"[{','.join(str(int(v)) for v in b['xyxy'])}]" for b in r["boxes"]) or "-"
            flag = "  (degenerate map)" if r["degenerate"] else ""
            print(f"{r['image']}: {r['label']} {r['score']:.3f}  boxes {boxes}  -> {r['overlay']}{flag}")
    return 0
