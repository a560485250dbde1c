"""``maskstream explain --mode faces``: every face of a photo gets its own class, map and box.

The same path as ``maskstream run --mode faces``: the face detector (same default, same ``--detector``
names), each face box enlarged by ``worker.face_margin`` per side and cropped, every crop of every image
classified and explained in one forward, each crop's map pasted back at its place. No math here: crops are
``core.frame_boxes``, maps and boxes ``core.explain``.

JSON (one record per image)::

    {"image", "mode": "faces", "detector", "method", "threshold", "overlay", "options" (model methods only),
     "faces": [{"box": [x1, y1, x2, y2],          # the detector's face box, image pixels
                "detector_score", "crop": [x1, y1, x2, y2],   # what the classifier saw
                "label", "score", "probs": {class: p}, "explained_class",
                "map": {"raw_max", "raw_mean", "in_face", "peak": [x, y], "n_components", "degenerate"},
                "map_boxes": [{"xyxy", "score"}]}]}   # boxes cut from the face's map, image pixels

``map.in_face`` is the share of the crop's map mass inside the face box (1 = all of it); ``peak`` is the
map's maximum in image pixels.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from stream.errors import UserError

COLORS = {"with_mask": (0, 200, 0), "without_mask": (0, 0, 230)}


def create_detector(name: str | None):
    """The faces-mode detector (``core.detect``), a UserError naming ``--detector`` when it cannot be built."""
    from core.detect import create_detector as _create

    try:
        return _create(name)
    except ValueError as exc:
        raise UserError(f"--detector {name!r}: {exc}") from None


def faces_overlay(image: np.ndarray, heat: np.ndarray, rects: np.ndarray, faces: list[dict],
                  alpha: float = 0.45) -> np.ndarray:
    """The map blended over each face crop (not elsewhere), each face box drawn with its number and class.

    Args:
        image: (H, W, 3) uint8 BGR.
        heat: (H, W) float map in [0, 1] (zero outside the crops).
        rects: (n, 4) int crops.
        faces: the JSON face records (box, label, score).
    """
    out = image.copy()
    colored = cv2.applyColorMap(np.uint8(np.clip(heat, 0, 1) * 255), cv2.COLORMAP_JET)
    blend = cv2.addWeighted(image, 1 - alpha, colored, alpha, 0)
    for x1, y1, x2, y2 in np.asarray(rects, np.int64):
        out[y1:y2, x1:x2] = blend[y1:y2, x1:x2]
    for k, f in enumerate(faces):
        color = COLORS.get(f["label"], (230, 160, 0))
        x1, y1, x2, y2 = (int(round(v)) for v in f["box"])
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), color, 2)
        text = f"{k} {f['label']} {f['score']:.2f}"
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        org = (max(0, min(x1, out.shape[1] - tw - 2)), max(12, y1 - 4))  # kept inside the image
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, text, org, cv2.FONT_HERSHEY_SIMPLEX, 0.45, color, 1, cv2.LINE_AA)
    return out


def explain_faces(args: argparse.Namespace, images: list[np.ndarray], ckpt, model, spec, target,
                  out_dir: Path, options: dict | None = None) -> list[dict]:
    """Detect, classify and explain every face of every image; write the overlays; return the JSON records.

    Every ``--method`` of frame mode works here: the crops are ordinary model inputs, so a model method
    (``haycam+hr``) runs on them with the same calibrated ``options`` (its variant) as on a whole image.
    """
    from core import explain
    from core.frame_boxes import crop_boxes_to_frame, crop_rects, paste_maps
    from core.localization import threshold_to_dict
    from core.preprocess import images_to_input
    from stream.config import WorkerConfig

    meta = ckpt.meta
    s = int(meta.input_size)
    defaults = WorkerConfig()
    detector = create_detector(args.detector)
    dets = detector.detect(images)
    per_image, crops = [], []
    for img, d in zip(images, dets):
        d = np.asarray(d, np.float32).reshape(-1, 5)
        rects, keep = crop_rects(d, img.shape[:2], defaults.face_margin, defaults.max_faces)
        per_image.append((d[keep], rects))
        crops.extend(img[y1:y2, x1:x2] for x1, y1, x2, y2 in rects)
    res = None
    if crops:
        device = next(model.parameters()).device
        try:
            res = explain(model, images_to_input(crops, meta, device), args.method, target, threshold=spec,
                          options=options)
        except ValueError as exc:  # e.g. stored options this model cannot take
            raise UserError(f"--method {args.method}: {exc}") from None
        probs = res.probs.cpu().numpy()
        maps = res.maps.cpu().numpy()
        raws = res.raw_maps.cpu().numpy()
    safe_method = args.method.replace("+", "plus")
    records, j = [], 0
    for path, img, (d, rects) in zip(args.images, images, per_image):
        h, w = img.shape[:2]
        faces = []
        for face, rect in zip(d, rects):
            x1, y1, x2, y2 = (int(v) for v in rect)
            k = int(res.labels[j])
            m = maps[j]
            # the face box inside the crop, in map (input) pixels
            fx1, fx2 = (np.clip([face[0] - x1, face[2] - x1], 0, x2 - x1) * s / (x2 - x1)).astype(int)
            fy1, fy2 = (np.clip([face[1] - y1, face[3] - y1], 0, y2 - y1) * s / (y2 - y1)).astype(int)
            total = float(m.sum())
            py, px = np.unravel_index(int(np.argmax(m)), m.shape)
            peak = crop_boxes_to_frame(np.array([[px + 0.5, py + 0.5, px + 0.5, py + 0.5]]), rect, (s, s))[0, :2]
            mb = [(crop_boxes_to_frame(np.array([b.xyxy]), rect, (s, s))[0], b.score) for b in res.boxes[j]]
            faces.append({
                "box": [round(float(v), 1) for v in face[:4]],
                "detector_score": round(float(face[4]), 4),
                "crop": [x1, y1, x2, y2],
                "label": meta.class_names[k],
                "score": float(probs[j, k]),
                "probs": {c: float(probs[j, i]) for i, c in enumerate(meta.class_names)},
                "explained_class": meta.class_names[int(res.target[j])],
                "map": {
                    "raw_max": float(raws[j].max()),
                    "raw_mean": float(raws[j].mean()),
                    "in_face": round(float(m[fy1:fy2, fx1:fx2].sum()) / total, 4) if total > 0 else 0.0,
                    "peak": [round(float(v), 1) for v in peak],
                    "n_components": int(res.n_components[j]) if res.n_components is not None else None,
                    "degenerate": bool(res.degenerate[j]),
                },
                "map_boxes": [{"xyxy": [round(float(v), 1) for v in xy], "score": round(float(sc), 4)}
                              for xy, sc in mb],
            })
            j += 1
        n = len(rects)
        heat = (paste_maps((h, w), maps[j - n : j], rects, dtype=np.float32) if n
                else np.zeros((h, w), np.float32))
        stem = Path(path).stem
        png = out_dir / f"{stem}_{safe_method}_faces.png"
        cv2.imwrite(str(png), faces_overlay(img, heat, rects, faces))
        rec = {"image": str(path), "mode": "faces", "detector": args.detector or _default_detector(),
               "method": args.method, "threshold": threshold_to_dict(spec), "faces": faces, "overlay": str(png)}
        if options:
            rec["options"] = options
        if args.save_maps:
            np.save(out_dir / f"{stem}_{safe_method}_faces_map.npy", heat)
            rec["maps"] = [str(out_dir / f"{stem}_{safe_method}_faces_map.npy")]
        records.append(rec)
    return records


def _default_detector() -> str:
    from core.detect import DEFAULT

    return DEFAULT


def print_text(records: list[dict]) -> None:
    """One line per image, then one indented line per face."""
    for r in records:
        print(f"{r['image']}: {len(r['faces'])} face(s)  -> {r['overlay']}")
        for k, f in enumerate(r["faces"]):
            box = ",".join(str(int(v)) for v in f["box"])
            flag = "  (degenerate map)" if f["map"]["degenerate"] else ""
            print(f"  {k}: {f['label']} {f['score']:.3f}  box [{box}]  map in face {f['map']['in_face']:.2f}{flag}")
