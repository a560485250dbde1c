"""LayerCAM (Jiang et al., 2021), the paper's Eq. (5): ReLU(Σ_k ReLU(dY/dA_k) ⊙ A_k)."""
from __future__ import annotations

import torch

from core.cams.base import CamInputs, MapResult


def layercam(inp: CamInputs) -> MapResult:
    """LayerCAM map at one layer.

    Args:
        inp: acts (B, C, h, w), grads (B, C, h, w).

    Returns:
        MapResult with raw (B, h, w) >= 0.
    """
    return MapResult(torch.relu((torch.relu(inp.grads) * inp.acts).sum(dim=1)))
