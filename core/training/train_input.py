"""Model input from cached uint8 crops, and batched prediction: shared by the training loop and its
diagnostics (kept apart from ``train.py`` so that neither imports the other)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from core.data.augment import AugmentConfig, augment_rgb01, augment_rgb01_with_masks, bgr_uint8_to_rgb01
from core.data.training_set import CLASS_NAMES
from core.model import ModelMeta
from core.preprocess import normalize


def _to_input(frames_u8: torch.Tensor, meta: ModelMeta, aug: AugmentConfig | None, g: torch.Generator) -> torch.Tensor:
    """(B, S, S, 3) uint8 BGR -> (B, 3, I, I) normalised input, augmented when ``aug`` is given."""
    x = bgr_uint8_to_rgb01(frames_u8)
    if aug is not None:
        x = augment_rgb01(x, aug, g, out_size=meta.input_size)
    elif x.shape[-1] != meta.input_size:
        x = F.interpolate(x, size=(meta.input_size,) * 2, mode="bilinear", align_corners=False, antialias=True)
    return normalize(x, meta.mean, meta.std)


def _to_input_with_masks(frames_u8: torch.Tensor, masks: torch.Tensor, meta: ModelMeta, aug: AugmentConfig,
                         g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_to_input` with augmentation, plus (B, 1, S, S) masks moved by the same geometry."""
    x, m = augment_rgb01_with_masks(bgr_uint8_to_rgb01(frames_u8), masks, aug, g, out_size=meta.input_size)
    return normalize(x, meta.mean, meta.std), m


def _predict(fn, n: int, batch: int, device: torch.device) -> np.ndarray:
    outs = []
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        for s in range(0, n, batch):
            outs.append(fn(np.arange(s, min(n, s + batch))).float().cpu())
    return torch.cat(outs).numpy() if outs else np.zeros((0, len(CLASS_NAMES)), np.float32)
