"""Box arithmetic for face detectors: resize-and-pad (letterbox), its inverse, IoU, NMS.

Coordinates are continuous pixel edges: a box [x1, y1, x2, y2] covers x1 <= x < x2.
Detections are float32 arrays of shape (n, 5): [x1, y1, x2, y2, score].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torchvision.ops import nms as _tv_nms

EMPTY = np.zeros((0, 5), dtype=np.float32)


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed on a detector canvas: ``canvas = frame * scale + (pad_x, pad_y)``.

    Attributes:
        scale: resize factor applied to both axes (aspect ratio kept).
        pad_x: columns of padding left of the resized frame.
        pad_y: rows of padding above the resized frame.
        frame_w: width of the original frame in pixels.
        frame_h: height of the original frame in pixels.
    """

    scale: float
    pad_x: int
    pad_y: int
    frame_w: int
    frame_h: int

    def __post_init__(self) -> None:
        if not (self.scale > 0 and math.isfinite(self.scale)):
            raise ValueError(f"scale must be a positive finite number, but got {self.scale}")
        if self.pad_x < 0 or self.pad_y < 0:
            raise ValueError(f"pad_x and pad_y must be >= 0, but got ({self.pad_x}, {self.pad_y})")
        if self.frame_w < 1 or self.frame_h < 1:
            raise ValueError(f"frame_w and frame_h must be >= 1, but got ({self.frame_w}, {self.frame_h})")

    @property
    def resized_wh(self) -> tuple[int, int]:
        """(width, height) of the frame after resizing, rounded to whole pixels (at least 1)."""
        return max(1, round(self.frame_w * self.scale)), max(1, round(self.frame_h * self.scale))


def plan_letterbox(frame_hw: tuple[int, int], long_side: int | None) -> Letterbox:
    """Scale so the frame's longer side becomes ``long_side`` (None: keep the frame size); no padding."""
    h, w = int(frame_hw[0]), int(frame_hw[1])
    scale = 1.0 if long_side is None else long_side / max(h, w)
    return Letterbox(scale=scale, pad_x=0, pad_y=0, frame_w=w, frame_h=h)


def canvas_size(boxes: list[Letterbox], stride: int) -> tuple[int, int]:
    """(width, height) of a canvas that holds every placed frame, rounded up to a multiple of ``stride``."""
    if not boxes:
        raise ValueError("canvas_size needs at least one Letterbox, but got an empty list")
    w = max(lb.pad_x + lb.resized_wh[0] for lb in boxes)
    h = max(lb.pad_y + lb.resized_wh[1] for lb in boxes)
    return int(math.ceil(w / stride) * stride), int(math.ceil(h / stride) * stride)


def place(
    image: np.ndarray, lb: Letterbox, canvas_wh: tuple[int, int], fill: tuple[float, ...] | float = 0
) -> np.ndarray:
    """Resize ``image`` (H, W, C) by ``lb.scale`` and paste it at (pad_x, pad_y) on a canvas.

    Returns:
        (canvas_h, canvas_w, C) array of the image's dtype, ``fill`` elsewhere.
    """
    rw, rh = lb.resized_wh
    cw, ch = canvas_wh
    if lb.pad_x + rw > cw or lb.pad_y + rh > ch:
        raise ValueError(f"canvas {canvas_wh} is too small for a {rw}x{rh} image at ({lb.pad_x}, {lb.pad_y})")
    if (image.shape[1], image.shape[0]) != (lb.frame_w, lb.frame_h):
        raise ValueError(
            f"image is {image.shape[1]}x{image.shape[0]} but the Letterbox expects {lb.frame_w}x{lb.frame_h}"
        )
    resized = (
        image if (rw, rh) == (lb.frame_w, lb.frame_h) else cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
    )
    out = np.empty((ch, cw) + image.shape[2:], dtype=image.dtype)
    out[...] = fill
    out[lb.pad_y : lb.pad_y + rh, lb.pad_x : lb.pad_x + rw] = resized
    return out


def undo_letterbox(dets: np.ndarray, lb: Letterbox) -> np.ndarray:
    """Canvas-pixel detections (n, 5) -> frame-pixel detections (n, 5), clipped to the frame."""
    out = np.asarray(dets, dtype=np.float32).reshape(-1, 5).copy()
    out[:, [0, 2]] = (out[:, [0, 2]] - lb.pad_x) / lb.scale
    out[:, [1, 3]] = (out[:, [1, 3]] - lb.pad_y) / lb.scale
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, lb.frame_w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, lb.frame_h)
    return out


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (n, >=4) and (m, >=4) xyxy boxes -> (n, m) float64 (0 where the union is empty)."""
    a = np.asarray(a, dtype=np.float64)[:, :4].reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64)[:, :4].reshape(-1, 4)
    iw = (np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])).clip(0)
    ih = (np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])).clip(0)
    inter = iw * ih
    area_a = ((a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0))[:, None]
    area_b = ((b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0))[None, :]
    union = area_a + area_b - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def filter_detections(
    dets: np.ndarray,
    score_threshold: float,
    nms_iou: float,
    max_detections: int | None = None,
    min_size: float = 0.0,
) -> np.ndarray:
    """Drop low scores and tiny boxes, then greedy NMS; result sorted by descending score.

    Args:
        dets: (n, 5) [x1, y1, x2, y2, score].
        score_threshold: keep scores >= this.
        nms_iou: suppress a box whose IoU with a higher-scoring kept box is > this (1.0 disables NMS).
        max_detections: keep at most this many (None: all).
        min_size: drop boxes whose shorter side is below this many pixels.

    Returns:
        (k, 5) float32.
    """
    d = np.asarray(dets, dtype=np.float32).reshape(-1, 5)
    keep = (d[:, 4] >= score_threshold) & (np.minimum(d[:, 2] - d[:, 0], d[:, 3] - d[:, 1]) >= min_size)
    d = d[keep]
    if len(d) == 0:
        return EMPTY.copy()
    if nms_iou < 1.0:
        idx = _tv_nms(torch.from_numpy(d[:, :4].copy()), torch.from_numpy(d[:, 4].copy()), float(nms_iou)).numpy()
    else:
        idx = np.argsort(-d[:, 4], kind="stable")
    if max_detections is not None:
        idx = idx[:max_detections]
    return np.ascontiguousarray(d[idx])
