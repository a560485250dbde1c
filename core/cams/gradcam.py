"""GradCAM (Selvaraju et al., 2017): ReLU(Σ_k mean_ij(dY/dA_k) · A_k)."""
from __future__ import annotations

import torch

from core.cams.base import CamInputs, MapResult


def gradcam(inp: CamInputs) -> MapResult:
    """GradCAM map.

    Args:
        inp: acts (B, C, h, w) and grads (B, C, h, w).

    Returns:
        MapResult with raw (B, h, w) >= 0.
    """
    weights = inp.grads.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return MapResult(torch.relu((weights * inp.acts).sum(dim=1)))
