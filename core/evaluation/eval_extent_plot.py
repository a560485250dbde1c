"""``extent.png`` of ``maskstream eval``: does each method's box grow with the face?

One point per crop: x is the face box's share of the window, y the predicted box area over the
face box area on a log scale (1× is the right size). A line per method joins the medians of
sliding bins. A map whose blob followed the face would keep its line on 1× across the plot; a
blob of one size whatever the face gives a line falling from left to right.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

W, H = 760, 460
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 44, 56
X_RANGE = (0.05, 0.40)  # face share of the window (context crops: 8-35%)
Y_RANGE = (-2.0, 2.0)  # log2 of box area / face area: 0.25x .. 4x
COLORS = [(200, 90, 20), (30, 130, 240), (60, 170, 60), (160, 60, 160)]  # BGR: blue, orange, green, purple
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def to_pixel(share: float, ratio: float) -> tuple[int, int]:
    """Canvas (x, y) of a crop with face share ``share`` and box/face area ``ratio`` (clipped to the axes)."""
    fx = (np.clip(share, *X_RANGE) - X_RANGE[0]) / (X_RANGE[1] - X_RANGE[0])
    fy = (np.clip(np.log2(ratio), *Y_RANGE) - Y_RANGE[0]) / (Y_RANGE[1] - Y_RANGE[0])
    return int(round(LEFT + fx * (W - LEFT - RIGHT))), int(round(H - BOTTOM - fy * (H - TOP - BOTTOM)))


def _text(img: np.ndarray, s: str, org: tuple[int, int], scale: float = 0.45, color=(40, 40, 40)) -> None:
    cv2.putText(img, s, org, _FONT, scale, color, 1, cv2.LINE_AA)


def _axes(img: np.ndarray, edges: tuple[float, ...]) -> None:
    x0, y0 = to_pixel(X_RANGE[0], 2.0 ** Y_RANGE[0])
    x1, y1 = to_pixel(X_RANGE[1], 2.0 ** Y_RANGE[1])
    cv2.rectangle(img, (x0, y1), (x1, y0), (120, 120, 120), 1)
    for r, name in ((0.25, "0.25x"), (0.5, "0.5x"), (1.0, "1x"), (2.0, "2x"), (4.0, "4x")):
        _, y = to_pixel(X_RANGE[0], r)
        cv2.line(img, (x0, y), (x1, y), (60, 60, 60) if r == 1.0 else (225, 225, 225), 2 if r == 1.0 else 1)
        _text(img, name, (x0 - 50, y + 5))
    for s in (0.10, 0.15, 0.20, 0.25, 0.30, 0.35):
        x, _ = to_pixel(s, 1.0)
        cv2.line(img, (x, y0), (x, y0 + 5), (120, 120, 120), 1)
        _text(img, f"{100 * s:.0f}%", (x - 14, y0 + 20))
    for e in edges:  # the report's buckets
        x, _ = to_pixel(e, 1.0)
        for y in range(y1, y0, 8):
            cv2.line(img, (x, y), (x, min(y + 4, y0)), (170, 170, 170), 1)
    _text(img, "face box share of the window", ((x0 + x1) // 2 - 110, H - 12), 0.5)
    _text(img, "predicted box area / face box area (log scale; 1x = right size)", (LEFT, 28), 0.5)


def render_extent(path: str | Path, share: np.ndarray, ratios: dict[str, np.ndarray],
                  edges: tuple[float, ...] = (0.15, 0.25), bins: int = 10) -> Path:
    """Write the extent chart.

    Args:
        share: (N,) face box area / window area per crop.
        ratios: method -> (N,) predicted box area / face box area (NaN where a crop got no box);
            at most four methods.
        edges: bucket edges drawn as dashed lines (those of the report's table).
        bins: sliding-median bins across the x range.

    Returns:
        The written path.
    """
    share = np.asarray(share, np.float64)
    if len(ratios) > len(COLORS):
        raise ValueError(f"at most {len(COLORS)} methods fit one chart, but got {len(ratios)}")
    img = np.full((H, W, 3), 255, np.uint8)
    _axes(img, edges)
    dots = img.copy()
    lo, hi = X_RANGE
    centres = np.linspace(lo + 0.5 * (hi - lo) / bins, hi - 0.5 * (hi - lo) / bins, bins)
    half = (hi - lo) / bins
    series = []  # (name, ratios, crops with a box, colour)
    for (name, r), color in zip(ratios.items(), COLORS):
        r = np.asarray(r, np.float64)
        series.append((name, r, np.isfinite(r) & (r > 0) & np.isfinite(share), color))
    for _, r, ok, color in series:
        for s, v in zip(share[ok], r[ok]):
            cv2.circle(dots, to_pixel(s, v), 2, color, -1, cv2.LINE_AA)
    img = cv2.addWeighted(dots, 0.45, img, 0.55, 0)  # faint dots, so the median lines stand out
    for k, (name, r, ok, color) in enumerate(series):
        pts = []
        for c in centres:
            sel = ok & (np.abs(share - c) <= half)
            if sel.sum() >= 5:
                pts.append(to_pixel(c, float(np.median(r[sel]))))
        if len(pts) >= 2:
            cv2.polylines(img, [np.array(pts, np.int32)], False, color, 3, cv2.LINE_AA)
        ly = TOP + 18 + 20 * k
        cv2.line(img, (W - RIGHT - 200, ly - 4), (W - RIGHT - 175, ly - 4), color, 3, cv2.LINE_AA)
        _text(img, f"{name} (median)", (W - RIGHT - 168, ly), 0.45)
    path = Path(path)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"could not write {path}")
    return path
