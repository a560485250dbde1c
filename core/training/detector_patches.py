"""Training patches for the face detector: a random scale and crop of a photo, flips, colour jitter.

The scale is what the detector sees at run time: ``scale`` = network pixels per photo pixel, so a
400 px photo at the default 640 px input has scale 1.6 and at the ``crowd`` preset's 1600 px, 4.0.
Sampling it log-uniformly over ``scale_range`` puts the photos' many 5-16 px faces onto the 16 px
anchors at stride 8, and keeps large faces in view too. Most patches are centred near a random face
(``face_centred``), the rest anywhere, so background is seen as well. Optionally (``blur``) a share of
patches is smoothed, like faces upscaled from a small photo or out of focus in video.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from core.detect.retinaface import MEAN_BGR


@dataclass(frozen=True)
class PatchParams:
    """How :func:`sample_patch` draws a patch."""

    size: int = 320  # square patch side, a multiple of 32
    scale_range: tuple[float, float] = (0.6, 4.5)
    face_centred: float = 0.8
    flip: float = 0.5
    brightness: float = 32.0  # +- uniform, in 0..255 units
    contrast: tuple[float, float] = (0.7, 1.3)
    saturation: tuple[float, float] = (0.7, 1.3)
    blur: float = 0.0  # share of patches smoothed by a Gaussian of sigma uniform in blur_sigma (network px)
    blur_sigma: tuple[float, float] = (0.5, 1.5)

    def __post_init__(self) -> None:
        if not 0 <= self.blur <= 1:
            raise ValueError(f"blur must be a share in [0, 1], but got {self.blur}")
        if self.size % 32 or self.size < 64:
            raise ValueError(f"size must be a multiple of 32 and >= 64, but got {self.size}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must be 0 < lo <= hi, but got {self.scale_range}")


def _jitter(patch: np.ndarray, rng: np.random.Generator, p: PatchParams) -> np.ndarray:
    x = patch.astype(np.float32)
    x += rng.uniform(-p.brightness, p.brightness)
    mean = x.mean()
    x = (x - mean) * rng.uniform(*p.contrast) + mean
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * rng.uniform(*p.saturation) + grey
    return np.clip(x, 0, 255).astype(np.uint8)


def sample_patch(
    image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator, params: PatchParams = PatchParams()
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented training patch.

    Args:
        image: (H, W, 3) uint8 BGR photo.
        boxes: (G, 4) float xyxy face boxes in photo pixels.
        rng: the run's seeded generator.
        params: sizes and jitter.

    Returns:
        patch (S, S, 3) uint8 BGR (outside the photo: the network's mean colour), boxes (k, 4) float32
        xyxy in patch pixels (clipped to it), ignore (k,) bool: faces whose centre fell outside the
        patch (partly visible: neither taught as face nor as background).
    """
    s_px = params.size
    h, w = image.shape[:2]
    lo, hi = np.log(params.scale_range)
    scale = float(np.exp(rng.uniform(lo, hi)))
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    sw, sh = w * scale, h * scale
    if len(boxes) and rng.random() < params.face_centred:
        b = boxes[rng.integers(len(boxes))] * scale
        cx = (b[0] + b[2]) / 2 + rng.uniform(-0.4, 0.4) * s_px
        cy = (b[1] + b[3]) / 2 + rng.uniform(-0.4, 0.4) * s_px
        x0, y0 = cx - s_px / 2, cy - s_px / 2
    else:
        x0 = rng.uniform(min(0.0, sw - s_px), max(0.0, sw - s_px))
        y0 = rng.uniform(min(0.0, sh - s_px), max(0.0, sh - s_px))
    m = np.array([[scale, 0, -x0], [0, scale, -y0]], dtype=np.float64)
    patch = cv2.warpAffine(image, m, (s_px, s_px), flags=cv2.INTER_LINEAR, borderValue=MEAN_BGR)
    b = boxes * scale - np.array([x0, y0, x0, y0], dtype=np.float32)
    centre = (b[:, :2] + b[:, 2:]) / 2
    inside = ((centre >= 0) & (centre < s_px)).all(axis=1)
    overlaps = (b[:, 2] > 0) & (b[:, 3] > 0) & (b[:, 0] < s_px) & (b[:, 1] < s_px)
    b = b[overlaps].clip(0, s_px)
    ignore = ~inside[overlaps]
    if rng.random() < params.flip:
        patch = np.ascontiguousarray(patch[:, ::-1])
        b = np.stack([s_px - b[:, 2], b[:, 1], s_px - b[:, 0], b[:, 3]], axis=1)
    if params.blur and rng.random() < params.blur:
        patch = cv2.GaussianBlur(patch, (0, 0), sigmaX=float(rng.uniform(*params.blur_sigma)))
    return _jitter(patch, rng, params), b.astype(np.float32).reshape(-1, 4), ignore


def to_blob(patches: list[np.ndarray]) -> np.ndarray:
    """(B of (S, S, 3) uint8 BGR) -> (B, 3, S, S) float32 minus the RetinaFace mean, as the detector feeds it."""
    x = np.stack(patches).astype(np.float32) - np.asarray(MEAN_BGR, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
