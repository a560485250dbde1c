"""Context crops: a square window around one face, as a camera frame would show it.

For each face with a usable label the window is square, the face box covers a fraction of
its area drawn from ``face_frac`` (default 8-35%), the face sits at a uniformly random
position inside it, and the window overlaps NO other annotated face (any positive-area
overlap with another box counts, whatever that box's label, ``mask_weared_incorrect``
included), so the window's label is that one face's label. The window may extend past the
image border (at most ``max_outside`` of its area); that part is filled by replicating the
edge pixels. The window is resized to ``size`` x ``size`` and the face box, mapped into
it, is the ground truth for localisation.

Windows have integer corners and sides, so the box mapping is exact.
"""
from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.data._geometry import box_to_window, cut_window, overlaps
from core.data.voc import VocImage, load_image


@dataclass(frozen=True)
class ContextCrop:
    """A square window around one face.

    Attributes:
        image: (S, S, 3) uint8 BGR.
        box: the face box in crop pixels (x1, y1, x2, y2).
        label: the face's label.
        source_file: ``VocImage.file`` it was cut from.
        face_fraction: face box area / window area, in the requested range.
        source_box: the face box in the source image's pixels (None when unknown).
    """

    image: np.ndarray
    box: tuple[float, float, float, float]
    label: str
    source_file: str
    face_fraction: float
    source_box: tuple[float, float, float, float] | None = None

    @property
    def face_px(self) -> float:
        """The face box's shorter side in the source image's pixels (NaN when ``source_box`` is unknown)."""
        if self.source_box is None:
            return float("nan")
        x1, y1, x2, y2 = self.source_box
        return float(min(x2 - x1, y2 - y1))

    def __post_init__(self) -> None:
        im = self.image
        if im.ndim != 3 or im.shape[2] != 3 or im.shape[0] != im.shape[1] or im.dtype != np.uint8:
            raise ValueError(f"image must be (S, S, 3) uint8, but got {im.shape} {im.dtype}")
        if len(self.box) != 4 or not (self.box[2] > self.box[0] and self.box[3] > self.box[1]):
            raise ValueError(f"box must be (x1, y1, x2, y2) with x1 < x2, y1 < y2, but got {self.box}")
        if not 0.0 < self.face_fraction <= 1.0:
            raise ValueError(f"face_fraction must be in (0, 1], but got {self.face_fraction}")


def make_context_crops(
    image: np.ndarray,
    vimg: VocImage,
    rng: np.random.Generator,
    size: int = 224,
    face_frac: tuple[float, float] = (0.08, 0.35),
    labels: Sequence[str] = ("with_mask", "without_mask"),
    max_tries: int = 50,
    *,
    max_outside: float = 0.5,
    min_face_px: float = 0.0,
) -> list[ContextCrop]:
    """One context crop per usable face of ``vimg`` (faces with no valid window are skipped).

    Args:
        image: (H, W, 3) uint8 BGR, the decoded ``vimg``.
        vimg: its annotation.
        rng: draws window sides (log-uniform) and positions (uniform).
        size: output side in pixels.
        face_frac: (low, high) range of face area / window area.
        labels: face labels that get a crop; other faces only block windows.
        max_tries: windows drawn per face before it is skipped.
        max_outside: largest fraction of the window area allowed outside the image.
        min_face_px: skip faces whose shorter side is below this (in image pixels).

    Returns:
        Crops in box order.
    """
    lo, hi = face_frac
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"face_frac must satisfy 0 < low <= high <= 1, but got {face_frac}")
    h, w = image.shape[:2]
    if (h, w) != (vimg.height, vimg.width):
        raise ValueError(f"{vimg.file}: image is {w}x{h}, annotation says {vimg.width}x{vimg.height}")
    out: list[ContextCrop] = []
    for i, face in enumerate(vimg.boxes):
        if face.label not in labels:
            continue
        x1, y1, x2, y2 = face.xyxy
        if min(x2 - x1, y2 - y1) < min_face_px:
            continue
        area = face.area
        s_lo = max(math.ceil(math.sqrt(area / hi)), math.ceil(x2) - math.floor(x1), math.ceil(y2) - math.floor(y1))
        s_hi = math.floor(math.sqrt(area / lo))
        if s_lo > s_hi:
            continue
        others = [b.xyxy for j, b in enumerate(vimg.boxes) if j != i]
        for _ in range(max_tries):
            side = int(round(math.exp(rng.uniform(math.log(s_lo), math.log(s_hi + 0.5)))))
            side = min(max(side, s_lo), s_hi)
            x0 = int(rng.integers(math.ceil(x2) - side, math.floor(x1) + 1))
            y0 = int(rng.integers(math.ceil(y2) - side, math.floor(y1) + 1))
            win = (x0, y0, x0 + side, y0 + side)
            inside = max(0, min(w, win[2]) - max(0, x0)) * max(0, min(h, win[3]) - max(0, y0))
            if 1.0 - inside / side**2 > max_outside:
                continue
            if any(overlaps(win, o) for o in others):
                continue
            out.append(ContextCrop(
                image=cut_window(image, x0, y0, side, size),
                box=box_to_window(face.xyxy, x0, y0, side, size),
                label=face.label,
                source_file=vimg.file,
                face_fraction=area / side**2,
                source_box=tuple(face.xyxy),
            ))
            break
    return out


def image_rng(seed: int, file: str) -> np.random.Generator:
    """The generator for one image: depends on the seed and the file name only."""
    return np.random.default_rng([int(seed), zlib.crc32(file.encode("utf-8"))])


def build_context_crops(
    root: str | Path,
    images: Sequence[VocImage],
    seed: int,
    size: int = 224,
    **kwargs,
) -> list[ContextCrop]:
    """Context crops for many images, deterministic under ``seed``.

    Each image draws from its own generator (:func:`image_rng`), so an image's crops do not
    depend on which other images are in ``images`` or on their order.

    Args:
        root: data root (``load_image(root, vimg)``).
        images: annotations, e.g. one side of :func:`core.data.splits.voc_split`.
        seed: random seed.
        size: output side.
        **kwargs: passed to :func:`make_context_crops` (``face_frac``, ``labels``, ...).
    """
    labels = kwargs.get("labels", ("with_mask", "without_mask"))
    out: list[ContextCrop] = []
    for vimg in images:
        if not any(b.label in labels for b in vimg.boxes):
            continue
        out.extend(make_context_crops(load_image(root, vimg), vimg, image_rng(seed, vimg.file), size, **kwargs))
    return out
