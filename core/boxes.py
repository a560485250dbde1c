"""Boxes from saliency maps: threshold (batched, on device), then connected components.

Coordinates are continuous pixel edges in input pixels: a component covering
columns c0..c1 and rows r0..r1 (inclusive) gives the box [c0, r0, c1 + 1, r1 + 1].
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

THRESHOLD_MODES = ("fraction", "percentile", "otsu")


@dataclass(frozen=True)
class Box:
    """One box in input-pixel coordinates, with the mean map value inside its blob as score."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    area: int = 0  # pixels in the connected component

    def __post_init__(self) -> None:
        if not (self.x2 >= self.x1 and self.y2 >= self.y1):
            raise ValueError(f"box must have x2 >= x1 and y2 >= y1, but got {self.xyxy}")

    @property
    def xyxy(self) -> list[float]:
        """[x1, y1, x2, y2]."""
        return [self.x1, self.y1, self.x2, self.y2]

    def scaled(self, sx: float, sy: float) -> "Box":
        """This box with x scaled by ``sx`` and y by ``sy`` (e.g. to frame pixels)."""
        return Box(self.x1 * sx, self.y1 * sy, self.x2 * sx, self.y2 * sy, self.score, self.area)


@dataclass(frozen=True)
class Threshold:
    """How a [0, 1] map becomes a binary mask.

    Attributes:
        mode: ``fraction`` (keep pixels >= value · max), ``percentile`` (keep pixels
            >= the value-th percentile, value in [0, 100]), or ``otsu`` (value unused).
        value: the mode's parameter.
        min_area: drop components smaller than this fraction of the image area.
    """

    mode: str = "fraction"
    value: float = 0.5
    min_area: float = 0.0

    def __post_init__(self) -> None:
        if self.mode not in THRESHOLD_MODES:
            raise ValueError(f"threshold mode must be one of {list(THRESHOLD_MODES)}, but got {self.mode!r}")
        if self.mode == "fraction" and not 0.0 <= self.value <= 1.0:
            raise ValueError(f"fraction threshold must be in [0, 1], but got {self.value}")
        if self.mode == "percentile" and not 0.0 <= self.value <= 100.0:
            raise ValueError(f"percentile threshold must be in [0, 100], but got {self.value}")
        if not 0.0 <= self.min_area < 1.0:
            raise ValueError(f"min_area must be in [0, 1), but got {self.min_area}")


def otsu_thresholds(maps: Tensor, bins: int = 256) -> Tensor:
    """Otsu's threshold of each map, batched.

    Args:
        maps: (B, H, W) values in [0, 1].

    Returns:
        (B,) thresholds: pixels > threshold are foreground.
    """
    b = maps.shape[0]
    flat = maps.reshape(b, -1).float().clamp(0, 1)
    idx = (flat * (bins - 1)).round().long()
    hist = torch.zeros(b, bins, device=maps.device).scatter_add_(1, idx, torch.ones_like(flat))
    p = hist / flat.shape[1]
    levels = torch.arange(bins, device=maps.device, dtype=torch.float32)
    w0 = p.cumsum(1)
    mu = (p * levels).cumsum(1)
    mu_t = mu[:, -1:]
    w1 = 1 - w0
    between = (mu_t * w0 - mu) ** 2 / (w0 * w1).clamp_min(1e-12)
    between = torch.where((w0 > 0) & (w1 > 0), between, torch.full_like(between, -1.0))
    k = between.argmax(dim=1).float()
    return (k + 0.5) / (bins - 1)


def threshold_values(maps: Tensor, spec: Threshold) -> Tensor:
    """Per-map threshold values (B,) for (B, H, W) maps in [0, 1]."""
    b = maps.shape[0]
    flat = maps.reshape(b, -1).float()
    if spec.mode == "fraction":
        return flat.amax(dim=1) * spec.value  # amax: the values only, no indices
    if spec.mode == "percentile":
        return torch.quantile(flat, spec.value / 100.0, dim=1)
    return otsu_thresholds(maps)


def masks_from_maps(maps: Tensor, spec: Threshold) -> Tensor:
    """Binary masks (B, H, W) bool: pixels at or above the threshold, and above zero."""
    t = threshold_values(maps, spec).view(-1, 1, 1)
    if spec.mode == "otsu":
        return (maps > t) & (maps > 0)
    if maps.device.type == "cpu" and bool((t > 0).all()):  # then >= t implies > 0: one pass less (no device sync)
        return maps >= t
    return (maps >= t) & (maps > 0)


def boxes_from_mask(mask: np.ndarray, values: np.ndarray, min_area: float = 0.0) -> list[Box]:
    """Connected components (8-connectivity) of one mask as boxes, best score first.

    Args:
        mask: (H, W) bool or uint8.
        values: (H, W) float map; a box's score is its component's mean value.
        min_area: drop components below this fraction of H·W.
    """
    h, w = mask.shape
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return []
    sums = np.bincount(labels.ravel(), weights=values.ravel().astype(np.float64), minlength=n)
    out = []
    for i in range(1, n):
        x, y, bw, bh, area = (int(v) for v in stats[i])
        if area < min_area * h * w:
            continue
        out.append(Box(float(x), float(y), float(x + bw), float(y + bh), float(sums[i] / area), area))
    out.sort(key=lambda bx: bx.score, reverse=True)
    return out


def boxes_from_maps(maps: Tensor, spec: Threshold | None = None) -> list[list[Box]]:
    """Boxes for a batch of maps: one list per image, best score first.

    Args:
        maps: (B, H, W) in [0, 1], any device; thresholding runs there, then one
            copy of masks and maps to the host for connected components.
        spec: threshold (default: 0.5 of the max).

    Returns:
        B lists of ``Box`` in the maps' pixel coordinates.
    """
    spec = spec or Threshold()
    masks = masks_from_maps(maps, spec).to("cpu", torch.uint8).numpy()
    values = maps.detach().float().cpu().numpy()
    return [boxes_from_mask(masks[i], values[i], spec.min_area) for i in range(maps.shape[0])]
