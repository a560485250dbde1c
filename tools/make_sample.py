"""Make the bundled sample media (core/assets/samples/) from a public-domain photo.

The photo is scikit-image's ``data.astronaut()`` (Eileen Collins, NASA: public domain, see
core/assets/samples/LICENSE.md). Nothing from ../shared/data is used. Outputs:

* ``sample.mp4``: 640x480, 25 fps, 8 s mp4v clip panning/zooming over the photo; seconds
  [2.5, 5.5) show the face with a drawn surgical-style mask, the rest without, so both
  classes appear.
* ``astronaut.png``, ``astronaut_masked.png``, ``astronaut_face_masked.png``: stills for
  ``maskstream explain``.

Needs scikit-image only here (``pip install scikit-image``); the product never imports it.
Deterministic: the same inputs give the same frames.

    python tools/make_sample.py [--out core/assets/samples] [--seconds 8] [--size 640x480]
    python tools/make_sample.py --check [--checkpoint PATH]   # does the classifier see the drawn mask?
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "core" / "assets" / "samples"
FACE_CENTER = (222.0, 118.0)  # (x, y) in the 512x512 photo

# Mask outline in photo pixels (x, y): from just below the eyes to under the chin.
MASK_POLY = np.array(
    [(181, 111), (222, 106), (264, 111), (273, 140), (260, 172), (222, 185), (186, 172), (172, 140)], np.float32
)
MASK_BGR = (228, 204, 150)  # light blue
PLEAT_BGR = (196, 170, 120)
LOOP_BGR = (240, 240, 240)


def photo() -> np.ndarray:
    """The astronaut photo as (512, 512, 3) uint8 BGR."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def draw_mask(image: np.ndarray, scale: int = 4) -> np.ndarray:
    """A copy of the photo with a surgical-style mask (pleats, ear loops) over the lower face.

    Drawn at ``scale``x with anti-aliasing, so edges stay smooth.
    """
    out = image.copy()
    h, w = image.shape[:2]
    big = cv2.resize(out, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
    s = float(scale)
    poly = (MASK_POLY * s).astype(np.int32)
    shift = 0
    # ear loops first (behind the mask body)
    for a, ear, b in (((181, 114), (171, 112), (174, 150)), ((264, 114), (276, 112), (271, 150))):
        pts = np.array([a, ear, (ear[0] - 2 if ear[0] < 222 else ear[0] + 2, 130), b], np.float32) * s
        cv2.polylines(big, [pts.astype(np.int32)], False, LOOP_BGR, int(1.5 * s), cv2.LINE_AA, shift)
    cv2.fillPoly(big, [poly], MASK_BGR, cv2.LINE_AA)
    # soft vertical shading: darker towards the chin
    m = np.zeros(big.shape[:2], np.uint8)
    cv2.fillPoly(m, [poly], 255, cv2.LINE_AA)
    ys = np.linspace(0, 1, big.shape[0], dtype=np.float32)[:, None]
    shade = np.clip((ys * h - 110) / 80, 0, 1) * 0.18
    f = (m.astype(np.float32) / 255.0) * shade
    big = (big.astype(np.float32) * (1 - f[..., None])).astype(np.uint8)
    # three pleats and a nose wire
    for y0 in (130, 145, 160):
        x_l = 176 + abs(y0 - 140) * 0.3
        x_r = 269 - abs(y0 - 140) * 0.3
        pts = np.array([(x_l, y0), ((x_l + x_r) / 2, y0 + 3), (x_r, y0)], np.float32) * s
        cv2.polylines(big, [pts.astype(np.int32)], False, PLEAT_BGR, int(1.2 * s), cv2.LINE_AA)
    wire = np.array([(196, 112), (222, 109), (248, 112)], np.float32) * s
    cv2.polylines(big, [wire.astype(np.int32)], False, (200, 200, 205), int(1.5 * s), cv2.LINE_AA)
    return cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)


def view(image: np.ndarray, t: float, size: tuple[int, int]) -> np.ndarray:
    """The camera at time t in [0, 1]: a 4:3 window that zooms in on the face and pans back out."""
    w_out, h_out = size
    hh, ww = image.shape[:2]
    zoom = 1.0 + 1.2 * np.sin(np.pi * t) ** 2  # 1x -> 2.2x -> 1x
    cw = ww / zoom
    ch = cw * h_out / w_out
    cx = (1 - zoom / 2.2) * ww / 2 + (zoom / 2.2) * FACE_CENTER[0] + 20 * np.sin(2 * np.pi * t)
    cy = (1 - zoom / 2.2) * hh / 2 + (zoom / 2.2) * FACE_CENTER[1] + 10 * np.cos(2 * np.pi * t)
    cx = float(np.clip(cx, cw / 2, ww - cw / 2))
    cy = float(np.clip(cy, ch / 2, hh - ch / 2))
    m = np.array(
        [[w_out / cw, 0, -(cx - cw / 2) * w_out / cw], [0, h_out / ch, -(cy - ch / 2) * h_out / ch]], np.float32
    )
    return cv2.warpAffine(image, m, (w_out, h_out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def write_clip(
    path: Path,
    seconds: float = 8.0,
    fps: int = 25,
    size: tuple[int, int] = (640, 480),
    masked_span: tuple[float, float] = (2.5, 5.5),
) -> int:
    """Write the sample clip; returns the number of frames."""
    plain, masked = photo(), None
    masked = draw_mask(plain)
    n = int(round(seconds * fps))
    path.parent.mkdir(parents=True, exist_ok=True)
    wr = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    if not wr.isOpened():
        raise SystemExit(f"cannot write {path}")
    try:
        for i in range(n):
            sec = i / fps
            src = masked if masked_span[0] <= sec < masked_span[1] else plain
            wr.write(view(src, i / max(n - 1, 1), size))
    finally:
        wr.release()
    return n


def check(out: Path, checkpoint: str | None, masked_span: tuple[float, float] = (2.5, 5.5)) -> int:
    """Classify the stills and the clip (frame mode, face-crop mode on the stills) with a checkpoint
    and print whether the drawn mask is recognised."""
    import sys
    import time

    sys.path.insert(0, str(ROOT))
    from stream.config import WorkerConfig
    from stream.frames import Frame
    from stream.processor import Processor, create_backend

    cfg = WorkerConfig(checkpoint=checkpoint, device="cpu")
    proc = Processor(create_backend(cfg), cfg)
    stills = {p.name: cv2.imread(str(p)) for p in sorted(out.glob("*.png"))}
    for name, im in stills.items():
        (r,) = proc.process([Frame("still", 0, im, time.monotonic())])
        print(
            f"{name:28s} -> {r.label} ({r.score:.2f})  expected {'with_mask' if 'masked' in name else 'without_mask'}"
        )
    cap = cv2.VideoCapture(str(out / "sample.mp4"))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    counts = {"masked": {}, "plain": {}}
    i = 0
    while True:
        ok, f = cap.read()
        if not ok:
            break
        (r,) = proc.process([Frame("clip", i, f, time.monotonic())])
        seg = "masked" if masked_span[0] <= i / fps < masked_span[1] else "plain"
        counts[seg][r.label] = counts[seg].get(r.label, 0) + 1
        i += 1
    cap.release()
    for seg, c in counts.items():
        print(f"sample.mp4 {seg:6s} frames: {c}  (expected {'with_mask' if seg == 'masked' else 'without_mask'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--size", default="640x480", help="WxH")
    ap.add_argument("--check", action="store_true", help="classify the existing samples with --checkpoint instead")
    ap.add_argument("--checkpoint", default=None, help="for --check (default: the shipped model)")
    a = ap.parse_args(argv)
    if a.check:
        return check(a.out, a.checkpoint)
    w, h = (int(v) for v in a.size.lower().split("x"))
    plain = photo()
    masked = draw_mask(plain)
    a.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(a.out / "astronaut.png"), cv2.resize(plain, (384, 384), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(a.out / "astronaut_masked.png"), cv2.resize(masked, (384, 384), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(a.out / "astronaut_face_masked.png"), masked[30:230, 122:322])
    n = write_clip(a.out / "sample.mp4", a.seconds, a.fps, (w, h))
    for p in sorted(a.out.iterdir()):
        print(f"{p.relative_to(ROOT) if p.is_relative_to(ROOT) else p}  {p.stat().st_size / 1e3:.0f} kB")
    print(f"sample.mp4: {n} frames, {w}x{h} at {a.fps} fps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
