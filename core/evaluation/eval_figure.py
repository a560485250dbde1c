"""The qualitative figure of ``maskstream eval`` (like the paper's Figures 6–8).

One row per example crop: the input with its ground-truth box (green), then for every
method the map overlaid (JET colormap), the predicted box (white) and its IoU.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

GT_COLOR = (0, 220, 0)  # BGR green
PRED_COLOR = (255, 255, 255)
HEADER_H = 28


def _box(img: np.ndarray, xyxy: Sequence[float], color: tuple[int, int, int], thick: int = 2) -> None:
    if xyxy is None or np.isnan(np.asarray(xyxy, dtype=float)).any():
        return
    x1, y1, x2, y2 = (int(round(v)) for v in xyxy)
    cv2.rectangle(img, (x1, y1), (max(x1, x2 - 1), max(y1, y2 - 1)), color, thick)


def _label(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5) -> None:
    # a 1-px dark halo from offset copies: OpenCV 5 spaces glyphs by stroke thickness, so a thick shadow
    # under thin text drifts apart along the line
    x, y = org
    for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (1, 1), (-1, 1), (1, -1)):
        cv2.putText(img, text, (x + dx, y + dy), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """BGR uint8 (S, S, 3) blended with a JET-coloured [0, 1] map of the same size."""
    colored = cv2.applyColorMap((np.clip(heat, 0, 1) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(image, 1 - alpha, colored, alpha, 0)


def render_figure(
    path: str | Path,
    images: Sequence[np.ndarray],
    gt_boxes: np.ndarray,
    labels: Sequence[str],
    methods: Sequence[str],
    maps: dict[str, np.ndarray],
    pred_boxes: dict[str, np.ndarray],
    ious: dict[str, np.ndarray],
) -> Path:
    """Write the figure as PNG.

    Args:
        images: R crops, (S, S, 3) BGR uint8.
        gt_boxes: (R, 4) in crop pixels.
        labels: R ground-truth labels (written on the input column).
        methods: column order.
        maps: method -> (R, S, S) maps in [0, 1].
        pred_boxes: method -> (R, 4) (NaN rows: no box).
        ious: method -> (R,) IoU of the predicted box.
    """
    s = images[0].shape[0]
    cols = ["input"] + list(methods)
    sheet = np.full((HEADER_H + len(images) * s, len(cols) * s, 3), 255, np.uint8)
    for j, name in enumerate(cols):
        cv2.putText(sheet, name, (j * s + 6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    for i, img in enumerate(images):
        y0 = HEADER_H + i * s
        tile = img.copy()
        _box(tile, gt_boxes[i], GT_COLOR)
        _label(tile, labels[i], (4, s - 8))
        sheet[y0:y0 + s, 0:s] = tile
        for j, m in enumerate(methods, start=1):
            tile = overlay(img, maps[m][i])
            _box(tile, gt_boxes[i], GT_COLOR, 1)
            _box(tile, pred_boxes[m][i], PRED_COLOR, 2)
            _label(tile, f"IoU {ious[m][i]:.2f}", (4, 18))
            sheet[y0:y0 + s, j * s:(j + 1) * s] = tile
    path = Path(path)
    if not cv2.imwrite(str(path), sheet):
        raise OSError(f"{path}: could not write the figure")
    return path


def render_errors(
    path: str | Path,
    images: Sequence[np.ndarray],
    gt_boxes: np.ndarray,
    labels: Sequence[str],
    predicted: Sequence[str],
    confidence: Sequence[float],
    face_px: Sequence[float],
    tile: int = 160,
    cols: int = 8,
) -> Path | None:
    """A grid of misclassified crops, each zoomed on its face (box side + 1/3 margin).

    Args:
        images: N BGR crops (S, S, 3); gt_boxes: (N, 4) their face boxes in crop pixels.
        labels, predicted: true and predicted class per crop; confidence: the predicted
            class's probability; face_px: the face's shorter side in the original photo.
        tile: side of each tile in pixels; cols: tiles per row.

    Returns:
        The path written, or None when there is nothing to draw.
    """
    if not len(images):
        return None
    tiles = []
    for img, b, lb, pr, p, fpx in zip(images, gt_boxes, labels, predicted, confidence, face_px):
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        m = max(4, (x2 - x1) // 3)
        h, w = img.shape[:2]
        face = img[max(0, y1 - m):min(h, y2 + m), max(0, x1 - m):min(w, x2 + m)]
        t = cv2.resize(face, (tile, tile), interpolation=cv2.INTER_NEAREST)  # keep the pixels visible
        _label(t, f"true: {lb.replace('_mask', '')}", (4, 16), 0.45)
        _label(t, f"pred: {pr.replace('_mask', '')}", (4, 34), 0.45)
        _label(t, f"p={p:.2f}  face {fpx:.0f}px", (4, tile - 8), 0.45)
        tiles.append(t)
    while len(tiles) % cols:
        tiles.append(np.zeros_like(tiles[0]))
    grid = np.vstack([np.hstack(tiles[r:r + cols]) for r in range(0, len(tiles), cols)])
    cv2.imwrite(str(path), grid)
    return Path(path)
