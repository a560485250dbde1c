"""HayCAM (Örnek & Ceylan, 2022) and HayCAM+ (Örnek & Ceylan, 2024, Algorithms 1–2).

HayCAM+: centre X (positions × channels) per channel, PCA, keep the smallest n whose
cumulative explained variance exceeds a fraction (0.9 in the paper), project and sum:
m = Σ_{k≤n} X v_k = Σ_{k≤n} s_k u_k. Class-agnostic, gradient-free. n is chosen per
image; the batch stays one tensor by masking components k ≥ n. No ReLU is applied (the
paper applies none); components carry the sign convention of ``core.cams.pca``.

HayCAM: a fixed n, and the GradCAM class weights w (mean gradient per channel) reduced
too: m = (X V_n)(V_nᵀ w). V_n is recovered from the projections as
V_n = Xᵀ U_n S_n⁻¹, so (X V_n)(V_nᵀ w) = Σ_k (X v_k) (v_kᵀ w).
"""
from __future__ import annotations

import torch

from core.cams.base import CamInputs, MapResult
from core.cams.pca import batched_pca, components_for_fraction, flatten_positions

DEFAULT_FRACTION = 0.9
DEFAULT_HAYCAM_COMPONENTS = 3


def haycam_plus(inp: CamInputs) -> MapResult:
    """HayCAM+ map.

    Args:
        inp: acts (B, C, h, w); option ``variance_fraction`` (default 0.9).

    Returns:
        MapResult with raw (B, h, w) (signed) and n_components (B,).
    """
    fraction = float(inp.options.get("variance_fraction", DEFAULT_FRACTION))
    b, _, h, w = inp.acts.shape
    pca = batched_pca(inp.acts)
    n = components_for_fraction(pca.ratio, fraction)  # (B,)
    keep = torch.arange(pca.proj.shape[2], device=n.device).unsqueeze(0) < n.unsqueeze(1)  # (B, R)
    raw = (pca.proj * keep.unsqueeze(1).to(pca.proj.dtype)).sum(dim=2).reshape(b, h, w)
    return MapResult(raw.to(inp.acts.dtype), n)


def haycam(inp: CamInputs) -> MapResult:
    """HayCAM map (class-dependent, fixed component count).

    Args:
        inp: acts (B, C, h, w), grads (B, C, h, w); option ``haycam_components`` (default 3).

    Returns:
        MapResult with raw (B, h, w) (signed) and n_components (B,).
    """
    k = int(inp.options.get("haycam_components", DEFAULT_HAYCAM_COMPONENTS))
    if k < 1:
        raise ValueError(f"haycam_components must be >= 1, but got {k}")
    b, c, h, w = inp.acts.shape
    pca = batched_pca(inp.acts)
    k = min(k, pca.proj.shape[2])
    proj = pca.proj[:, :, :k]  # (B, N, k) = X V_k
    x = flatten_positions(inp.acts.to(proj.dtype))  # (B, N, C)
    s = pca.var[:, :k].sqrt()  # (B, k)
    safe = torch.where(s > 0, s, torch.ones_like(s))
    v = (x.transpose(1, 2) @ proj) / (safe * safe).unsqueeze(1)  # (B, C, k): Xᵀ X v_k / s_k² = v_k
    v = torch.where((s > 0).unsqueeze(1), v, torch.zeros_like(v))
    weights = inp.grads.to(proj.dtype).mean(dim=(2, 3))  # (B, C)
    reduced = (v * weights.unsqueeze(2)).sum(dim=1)  # (B, k) = V_kᵀ w
    raw = (proj * reduced.unsqueeze(1)).sum(dim=2).reshape(b, h, w)
    n = torch.full((b,), k, dtype=torch.long, device=raw.device)
    return MapResult(raw.to(inp.acts.dtype), n)
