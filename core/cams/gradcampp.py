"""GradCAM++ (Chattopadhay et al., 2018), the paper's Eq. (4).

α_ij^k = g² / (2 g² + Σ_ab A_ab^k · g³ + ε), weight_k = Σ_ij α_ij^k ReLU(g_ij^k),
map = ReLU(Σ_k weight_k A_k), with g = dY/dA (the exponential-score form used by
pytorch-grad-cam, where higher derivatives are powers of g).

About ε: pytorch-grad-cam uses ε = 1e-6. For a GAP + linear head g = W/(h·w), so at
7×7 g² is ~1e-6 too: ε is not negligible and visibly changes the map. We match
pytorch-grad-cam by default (``gradcampp_eps=1e-6``); pass another value in the
method options to change it.
"""
from __future__ import annotations

import torch

from core.cams.base import CamInputs, MapResult

DEFAULT_EPS = 1e-6


def gradcam_pp(inp: CamInputs) -> MapResult:
    """GradCAM++ map.

    Args:
        inp: acts (B, C, h, w), grads (B, C, h, w); option ``gradcampp_eps`` (default 1e-6).

    Returns:
        MapResult with raw (B, h, w) >= 0.
    """
    eps = float(inp.options.get("gradcampp_eps", DEFAULT_EPS))
    g, a = inp.grads, inp.acts
    g2 = g * g
    g3 = g2 * g
    sum_a = a.sum(dim=(2, 3), keepdim=True)
    alpha = g2 / (2 * g2 + sum_a * g3 + eps)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * torch.relu(g)).sum(dim=(2, 3), keepdim=True)
    return MapResult(torch.relu((weights * a).sum(dim=1)))
