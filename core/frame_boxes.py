"""Small geometry and evidence helpers that put model-space results into frame pixels.

* :func:`class_evidence_maps` / :func:`box_class_logits`: label each map blob by the class
  evidence inside it. For a GAP + linear head the class activation map
  ``E_k = Σ_c W[k, c] A_c + b_k`` (Zhou et al., CAM, 2016) averages to exactly the logit
  ``y_k`` over the whole grid, so its mean over a box is "the logit the head would give
  to that region alone". A box covering the whole input gives back the image's logits.
* :func:`scale_boxes`: input pixels of a squashed (not letterboxed) resize -> frame pixels.
* :func:`crop_rects` / :func:`crop_boxes_to_frame`: face boxes -> clipped integer crops, and
  crop-input pixels back to frame pixels.
* :func:`paste_maps`: each crop's map resized and pasted into a frame-sized canvas (max).
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
from torch import Tensor

from core.boxes import Box


def class_evidence_maps(acts: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """Class activation maps of a GAP + linear head.

    Args:
        acts: (B, C, h, w) last-conv activations.
        weight: (K, C) head weights.
        bias: (K,) head bias, or None.

    Returns:
        (B, K, h, w) float32; ``E.mean((2, 3))`` equals the logits (B, K).
    """
    if acts.dim() != 4 or weight.dim() != 2 or weight.shape[1] != acts.shape[1]:
        raise ValueError(
            f"acts (B, C, h, w) and weight (K, C) must share C, but got {tuple(acts.shape)} and {tuple(weight.shape)}"
        )
    ev = torch.einsum("bchw,kc->bkhw", acts.float(), weight.float())
    if bias is not None:
        ev = ev + bias.float().view(1, -1, 1, 1)
    return ev


def _overlap_weights(lo: Tensor, hi: Tensor, n: int) -> Tensor:
    """(N, n) length of [lo, hi] ∩ [j, j+1] for grid cells j (grid units)."""
    j = torch.arange(n, dtype=lo.dtype, device=lo.device).view(1, -1)
    return (torch.minimum(hi.view(-1, 1), j + 1) - torch.maximum(lo.view(-1, 1), j)).clamp_min(0)


def box_class_logits(evidence: Tensor, boxes: Sequence[Sequence[Box]], input_size: tuple[int, int]) -> list[Tensor]:
    """Mean class evidence inside each box: per-box logits.

    The evidence grid (h, w) covers the input (H, W); each cell is treated as constant
    over its area, and a box averages the cells weighted by their overlap with it.

    Args:
        evidence: (B, K, h, w) from :func:`class_evidence_maps`.
        boxes: B lists of boxes in input pixels.
        input_size: (H, W) of the model input.

    Returns:
        B tensors of shape (n_i, K) (float32, on the host); a zero-area box gets the
        evidence at its point.
    """
    b, k, h, w = evidence.shape
    if len(boxes) != b:
        raise ValueError(f"boxes must have one list per image ({b}), but got {len(boxes)}")
    flat = [(i, bx) for i, lst in enumerate(boxes) for bx in lst]
    if not flat:
        return [torch.zeros(0, k) for _ in range(b)]
    ev = evidence.float()
    xy = torch.tensor([bx.xyxy for _, bx in flat], dtype=torch.float32, device=ev.device)  # (N, 4)
    idx = torch.tensor([i for i, _ in flat], dtype=torch.long, device=ev.device)
    sx, sy = w / float(input_size[1]), h / float(input_size[0])
    x1, y1, x2, y2 = xy[:, 0] * sx, xy[:, 1] * sy, xy[:, 2] * sx, xy[:, 3] * sy
    eps = 1e-3  # a degenerate (zero-width) box still samples the cell it sits on
    x2, y2 = torch.maximum(x2, x1 + eps), torch.maximum(y2, y1 + eps)
    wx = _overlap_weights(x1, x2, w)  # (N, w)
    wy = _overlap_weights(y1, y2, h)  # (N, h)
    num = torch.einsum("nh,nkhw,nw->nk", wy, ev[idx], wx)
    den = (wy.sum(1) * wx.sum(1)).clamp_min(1e-12).view(-1, 1)
    logits = (num / den).cpu()
    out, start = [], 0
    for lst in boxes:
        out.append(logits[start : start + len(lst)])
        start += len(lst)
    return out


def scale_boxes(xyxy: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """Boxes in a (H, W) image -> the same boxes in a (H', W') image it was squashed from/to.

    Args:
        xyxy: (N, 4) x1, y1, x2, y2.
        from_size: (H, W) the boxes are in.
        to_size: (H', W') wanted.

    Returns:
        (N, 4) float32.
    """
    xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
    s = np.array([to_size[1] / from_size[1], to_size[0] / from_size[0]] * 2, dtype=np.float32)
    return xyxy * s


def crop_rects(
    dets: np.ndarray, frame_size: tuple[int, int], margin: float = 0.0, max_n: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Detector boxes -> integer crop rectangles inside the frame.

    Each box is enlarged by ``margin`` × its width/height on every side, rounded outwards,
    clipped to the frame; boxes left with less than 2 pixels per side are dropped.

    Args:
        dets: (n, 5) x1, y1, x2, y2, score in frame pixels (or (n, 4)).
        frame_size: (H, W).
        margin: fraction of the box size added per side.
        max_n: keep at most this many, highest score first.

    Returns:
        (rects (m, 4) int64 x1, y1, x2, y2 with x2 > x1 + 1, y2 > y1 + 1; keep (m,) indices into dets).
    """
    d = np.asarray(dets, dtype=np.float32)
    if d.size == 0:
        return np.zeros((0, 4), np.int64), np.zeros(0, np.int64)
    if d.ndim != 2 or d.shape[1] not in (4, 5):
        raise ValueError(f"dets must have shape (n, 4) or (n, 5), but got {d.shape}")
    order = np.argsort(-d[:, 4], kind="stable") if d.shape[1] > 4 else np.arange(len(d))
    if max_n is not None:
        order = order[:max_n]
    b = d[order, :4]
    finite = np.isfinite(b).all(1)
    b, order = b[finite], order[finite]
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    h, w = frame_size
    x1 = np.clip(np.floor(b[:, 0] - margin * bw), 0, w)
    y1 = np.clip(np.floor(b[:, 1] - margin * bh), 0, h)
    x2 = np.clip(np.ceil(b[:, 2] + margin * bw), 0, w)
    y2 = np.clip(np.ceil(b[:, 3] + margin * bh), 0, h)
    rects = np.stack([x1, y1, x2, y2], 1).astype(np.int64)
    ok = (rects[:, 2] - rects[:, 0] >= 2) & (rects[:, 3] - rects[:, 1] >= 2)
    return rects[ok], order[ok].astype(np.int64)


def crop_boxes_to_frame(xyxy: np.ndarray, rect: Sequence[int], input_size: tuple[int, int]) -> np.ndarray:
    """Boxes in a crop's model-input pixels -> frame pixels.

    Args:
        xyxy: (N, 4) in the (S_h, S_w) input the crop was squashed to.
        rect: the crop's x1, y1, x2, y2 in frame pixels.
        input_size: (S_h, S_w).
    """
    x1, y1, x2, y2 = rect
    out = scale_boxes(xyxy, input_size, (y2 - y1, x2 - x1))
    return out + np.array([x1, y1, x1, y1], dtype=np.float32)


def paste_maps(frame_size: tuple[int, int], maps: np.ndarray, rects: np.ndarray, dtype=np.uint8) -> np.ndarray:
    """Paste each crop's map into a frame-sized canvas (element-wise max where crops overlap).

    Args:
        frame_size: (H, W).
        maps: (n, S, S) maps (uint8 or float).
        rects: (n, 4) int crops x1, y1, x2, y2 in frame pixels.

    Returns:
        (H, W) canvas of ``dtype``, zero outside the crops.
    """
    canvas = np.zeros(frame_size, dtype=dtype)
    for m, (x1, y1, x2, y2) in zip(maps, np.asarray(rects, dtype=np.int64)):
        if x2 <= x1 or y2 <= y1:
            continue
        r = cv2.resize(np.asarray(m, dtype=dtype), (int(x2 - x1), int(y2 - y1)), interpolation=cv2.INTER_LINEAR)
        np.maximum(canvas[y1:y2, x1:x2], r, out=canvas[y1:y2, x1:x2])
    return canvas
