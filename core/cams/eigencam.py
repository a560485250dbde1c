"""EigenCAM (Muhammad & Yeasin, 2020): projection on the first principal component.

Like pytorch-grad-cam, the projection goes through a ReLU. Unlike it, the
component's sign is fixed by our convention (``core.cams.pca``), so the map never
comes out inverted or blank because a solver flipped the sign (pytorch-grad-cam
issues #315, #364). Where the solver's sign agrees with ours the maps are equal.
"""
from __future__ import annotations

import torch

from core.cams.base import CamInputs, MapResult
from core.cams.pca import batched_pca


def eigencam(inp: CamInputs) -> MapResult:
    """EigenCAM map.

    Args:
        inp: acts (B, C, h, w).

    Returns:
        MapResult with raw (B, h, w) >= 0 and n_components = 1.
    """
    b, _, h, w = inp.acts.shape
    pca = batched_pca(inp.acts)
    raw = torch.relu(pca.proj[:, :, 0]).reshape(b, h, w)
    return MapResult(raw.to(inp.acts.dtype), torch.ones(b, dtype=torch.long, device=raw.device))
