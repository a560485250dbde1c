"""From decoded frames to model input, as torch ops on the target device.

Convention everywhere in maskstream: numpy images are OpenCV's (H, W, 3) uint8 **BGR**.
The model sees RGB in [0, 1], normalised with the checkpoint's mean/std.
Training and inference both go through :func:`normalize` so they cannot drift apart.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from core.model import ModelMeta


def normalize(rgb01: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> normalised model input (same shape)."""
    m = torch.as_tensor(mean, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=rgb01.dtype, device=rgb01.device).view(1, 3, 1, 1)
    return (rgb01 - m) / s


def denormalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Inverse of :func:`normalize`: (B, 3, H, W) model input -> RGB in [0, 1]."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return x * s + m


def bgr_to_input(
    frames: Tensor,
    size: int | tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Batch of BGR uint8 frames -> normalised model input, on the frames' device.

    Args:
        frames: (B, H, W, 3) uint8 BGR (all frames of one size; resize first otherwise).
        size: output side S, or (H_out, W_out).
        dtype: output dtype (float16 on CUDA halves the transfer and the forward).

    Returns:
        (B, 3, H_out, W_out) normalised RGB.
    """
    if frames.dim() != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must have shape (B, H, W, 3), but got {tuple(frames.shape)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    x = frames.flip(-1).permute(0, 3, 1, 2).to(torch.float32) / 255.0  # BGR->RGB, (B,3,H,W)
    if tuple(x.shape[-2:]) != hw:
        x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False, antialias=True)
    return normalize(x, mean, std).to(dtype)


def images_to_input(
    images: Sequence[np.ndarray],
    meta: ModelMeta,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """BGR uint8 images of any sizes -> (B, 3, S, S) model input on ``device``.

    Each image is uploaded as is and resized on the device (one image at a time only
    when sizes differ; same-size batches go through one ``bgr_to_input`` call).
    """
    if len(images) == 0:
        return torch.empty(0, 3, meta.input_size, meta.input_size, dtype=dtype, device=device)
    shapes = {im.shape for im in images}
    if len(shapes) == 1:
        t = torch.from_numpy(np.ascontiguousarray(np.stack(images))).to(device)
        return bgr_to_input(t, meta.input_size, meta.mean, meta.std, dtype)
    return torch.cat([
        bgr_to_input(torch.from_numpy(np.ascontiguousarray(im)).to(device)[None], meta.input_size, meta.mean, meta.std, dtype)
        for im in images
    ])
