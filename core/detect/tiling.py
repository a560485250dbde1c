"""Sliced (tiled) detection arithmetic: plan overlapping tiles, shift tile boxes back, merge duplicates.

The approach of SAHI (Akyon et al., "Slicing Aided Hyper Inference and Fine-tuning for Small Object
Detection", ICIP 2022): cut the frame into overlapping tiles, detect in each tile (each is enlarged to
the detector's input, so small faces get more pixels), shift the tiles' boxes back to frame
coordinates, add the full-frame pass, and merge the boxes that found the same face twice: greedy
non-maximum *merging* (NMM) with the intersection over the smaller box (IoS), so that the half of a
face a tile border cut off merges into the whole face the neighbouring tile or the full frame saw.

Pure numpy; detections are float32 arrays (n, 5) [x1, y1, x2, y2, score] in pixels.
"""

from __future__ import annotations

import math

import numpy as np

from core.detect.geometry import EMPTY, box_iou

MERGE_METHODS = ("nmm", "nms")
MATCH_METRICS = ("ios", "iou")


def tile_grid(frame_hw: tuple[int, int], tiles: int) -> tuple[int, int]:
    """(columns, rows) for ``tiles`` tiles along the frame's longer side, about square tiles.

    The shorter side gets ``round(tiles * short / long)`` tiles (at least 1).
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if tiles < 1:
        raise ValueError(f"tiles must be >= 1, but got {tiles}")
    if h < 1 or w < 1:
        raise ValueError(f"frame size must be >= 1x1, but got {w}x{h}")
    short = max(1, round(tiles * min(h, w) / max(h, w)))
    return (tiles, short) if w >= h else (short, tiles)


def _spans(length: int, n: int, overlap: float) -> list[tuple[int, int]]:
    """``n`` intervals [a, b) covering [0, length), neighbours sharing ``overlap`` of a tile's length."""
    if n == 1:
        return [(0, length)]
    size = length / (n - (n - 1) * overlap)  # n tiles, n - 1 overlaps
    step = size * (1.0 - overlap)
    out = []
    for i in range(n):
        a = int(math.floor(i * step))
        b = int(math.ceil(i * step + size))
        out.append((max(0, min(a, length - 1)), min(length, b)))
    out[-1] = (out[-1][0], length)  # the last tile ends exactly at the border
    return out


def plan_tiles(frame_hw: tuple[int, int], tiles: int, overlap: float) -> np.ndarray:
    """Overlapping tiles that cover the frame.

    Args:
        frame_hw: (height, width) of the frame in pixels.
        tiles: tiles along the longer side (1: the whole frame as one tile); see :func:`tile_grid`.
        overlap: fraction of a tile's width (height) shared with its right (lower) neighbour, in [0, 0.9].

    Returns:
        (T, 4) int64 [x1, y1, x2, y2] per tile (x2, y2 exclusive), row by row, T = columns * rows.
    """
    if not 0.0 <= overlap <= 0.9:
        raise ValueError(f"overlap must be in [0, 0.9], but got {overlap}")
    cols, rows = tile_grid(frame_hw, tiles)
    xs = _spans(int(frame_hw[1]), cols, overlap)
    ys = _spans(int(frame_hw[0]), rows, overlap)
    return np.array([(x1, y1, x2, y2) for y1, y2 in ys for x1, x2 in xs], dtype=np.int64).reshape(-1, 4)


def shift_detections(dets: np.ndarray, offset_xy: tuple[float, float]) -> np.ndarray:
    """Tile-pixel detections (n, 5) -> frame pixels: add the tile's top-left corner (x0, y0) to the box."""
    out = np.asarray(dets, dtype=np.float32).reshape(-1, 5).copy()
    out[:, [0, 2]] += float(offset_xy[0])
    out[:, [1, 3]] += float(offset_xy[1])
    return out


def box_ios(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box's area, (n, >=4) x (m, >=4) -> (n, m) float64."""
    a = np.asarray(a, dtype=np.float64)[:, :4].reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64)[:, :4].reshape(-1, 4)
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    area_a = ((a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0))[:, None]
    area_b = ((b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0))[None, :]
    smaller = np.minimum(area_a, area_b)
    inter = iw * ih
    return np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)


def merge_detections(dets: np.ndarray, method: str = "nmm", metric: str = "ios", threshold: float = 0.5) -> np.ndarray:
    """Merge detections of the same face found more than once (by several tiles, or a tile and the frame).

    Greedy, in descending score order: the best remaining box takes every remaining box whose overlap
    with it (``metric``) is >= ``threshold``. ``nms`` keeps the best box as it is; ``nmm`` replaces it
    by the union (enclosing box) of the group, so a face cut by a tile border regains its full extent.
    The group's score is the best box's score.

    Args:
        dets: (n, 5) [x1, y1, x2, y2, score].
        method: ``nmm`` (merge) or ``nms`` (suppress).
        metric: ``ios`` (intersection over the smaller box) or ``iou``.
        threshold: overlap at or above which two boxes are the same face, in (0, 1].

    Returns:
        (k, 5) float32, sorted by descending score.
    """
    if method not in MERGE_METHODS:
        raise ValueError(f"merge method must be one of {', '.join(MERGE_METHODS)}, but got {method!r}")
    if metric not in MATCH_METRICS:
        raise ValueError(f"match metric must be one of {', '.join(MATCH_METRICS)}, but got {metric!r}")
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"merge threshold must be in (0, 1], but got {threshold}")
    d = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
    if len(d) == 0:
        return EMPTY.copy()
    d = d[np.argsort(-d[:, 4], kind="stable")]
    overlap = box_ios(d, d) if metric == "ios" else box_iou(d, d)
    free = np.ones(len(d), dtype=bool)
    out = []
    for i in range(len(d)):
        if not free[i]:
            continue
        group = free & (overlap[i] >= threshold)
        group[i] = True
        free &= ~group
        if method == "nmm":
            g = d[group]
            out.append([g[:, 0].min(), g[:, 1].min(), g[:, 2].max(), g[:, 3].max(), d[i, 4]])
        else:
            out.append(d[i].tolist())
    return np.asarray(out, dtype=np.float32).reshape(-1, 5)
