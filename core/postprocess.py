"""Per-image normalisation and upsampling of maps, on the maps' device."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# Like pytorch-grad-cam's scale_cam_image: (m - min) / (max - min + 1e-7).
NORM_EPS = 1e-7
# A map whose range is below this (relative to its magnitude) is called constant.
FLAT_RTOL = 1e-6


def sanitize(acts: Tensor) -> tuple[Tensor, Tensor]:
    """Zero the activations of images that hold NaN or Inf.

    Args:
        acts: (B, ...) tensor.

    Returns:
        (clean (B, ...), bad (B,) bool): ``clean`` is ``acts`` with bad images zeroed.
    """
    # One sum per image instead of a mask over every activation. A float64 sum of float32 (or narrower)
    # values cannot overflow, so it is non-finite exactly when a NaN or Inf is in the image. On the CPU a
    # float32 sum is 5x cheaper and finite in every normal case; only where it is not (a NaN or Inf, or
    # values near the float32 limit) is the exact float64 sum taken (a branch: no device to sync there).
    flat = acts.flatten(1)
    if acts.device.type == "cpu":
        bad = ~torch.isfinite(flat.sum(dim=1))
        if bad.any():
            bad = ~torch.isfinite(flat.sum(dim=1, dtype=torch.float64))
    else:
        bad = ~torch.isfinite(flat.sum(dim=1, dtype=torch.float64))
    if bad.any():
        acts = torch.where(bad.view(-1, *([1] * (acts.dim() - 1))), torch.zeros_like(acts), acts)
    return acts, bad


def normalize_maps(raw: Tensor, invalid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Min-max normalise each map to [0, 1].

    Args:
        raw: (B, h, w) maps.
        invalid: optional (B,) bool, images already known to be degenerate.

    Returns:
        (maps (B, h, w) in [0, 1], degenerate (B,) bool). Degenerate maps (non-finite,
        constant, or flagged ``invalid``) are all zero.
    """
    flat = raw.flatten(1).float()
    cpu = flat.device.type == "cpu"
    if cpu and flat.numel() > 0 and not flat.requires_grad:  # numpy: the same float32 ops, a third of the cost
        out_np, degenerate_np = normalize_maps_host(flat.numpy(), None if invalid is None else invalid.cpu().numpy())
        return torch.from_numpy(out_np).view(raw.shape), torch.from_numpy(degenerate_np)
    out, degenerate = normalize_maps_torch(flat, invalid)
    return out.view_as(raw), degenerate


def normalize_maps_torch(flat: Tensor, invalid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """:func:`normalize_maps` of (B, N) float32 maps in torch, on their device: (maps (B, N), degenerate (B,))."""
    cpu = flat.device.type == "cpu"
    if cpu:  # the common case in two cheap ops: a finite float32 sum means every value is finite
        finite = torch.isfinite(flat.sum(dim=1))
        if not bool(finite.all()):  # a NaN or Inf somewhere (or a sum past the float32 limit): exactly
            finite = torch.isfinite(flat).all(dim=1)
            flat = torch.where(finite.unsqueeze(1), flat, torch.zeros_like(flat))
    else:  # no data-dependent branch on a device: one pass, no sync
        finite = torch.isfinite(flat).all(dim=1)
        flat = torch.where(finite.unsqueeze(1), flat, torch.zeros_like(flat))
    # amin/amax, not min/max(dim).values: no indices to track (10x cheaper on the CPU for a 56x56 grid)
    lo = flat.amin(dim=1, keepdim=True)
    hi = flat.amax(dim=1, keepdim=True)
    span = hi - lo
    scale = torch.maximum(hi.abs(), lo.abs())
    flat_map = (span <= FLAT_RTOL * scale).squeeze(1) | (span.squeeze(1) == 0)
    degenerate = ~finite | flat_map
    if invalid is not None:
        degenerate = degenerate | invalid
    out = (flat - lo) / (span + NORM_EPS)
    if not cpu or bool(degenerate.any()):
        out = torch.where(degenerate.unsqueeze(1), torch.zeros_like(out), out)
    return out, degenerate


def normalize_maps_host(flat: np.ndarray, invalid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`normalize_maps` of (B, N) float32 maps as numpy arrays: (maps (B, N), degenerate (B,) bool).

    The same float32 operations in the same order as the torch code (a finite sum, else the exact per-value
    check; min and max; the flat-map test; ``(m - lo) / (span + NORM_EPS)``; zeros where degenerate), so the
    same values bit for bit (tested); on the CPU, for the small maps the worker normalises, numpy's per-call
    cost is a fraction of torch's. The constants are cast to float32 first, as torch does, so every step
    stays in float32.
    """
    # as in torch, an overflow (a huge sum or span) or a NaN is an answer here, not something to warn about
    with np.errstate(all="ignore"):
        finite = np.isfinite(flat.sum(axis=1))
        if not finite.all():  # a NaN or Inf somewhere (or a sum past the float32 limit): exactly
            finite = np.isfinite(flat).all(axis=1)
            flat = np.where(finite[:, None], flat, np.float32(0))
        lo = flat.min(axis=1, keepdims=True)
        hi = flat.max(axis=1, keepdims=True)
        span = hi - lo
        flat_map = ((span <= np.float32(FLAT_RTOL) * np.maximum(np.abs(hi), np.abs(lo))) | (span == 0))[:, 0]
        degenerate = ~finite | flat_map
        if invalid is not None:
            degenerate = degenerate | invalid.astype(bool)
        out = (flat - lo) / (span + np.float32(NORM_EPS))
        if degenerate.any():
            out = np.where(degenerate[:, None], np.float32(0), out)
        return out, degenerate


def upsample_maps(maps: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear upsampling (half-pixel centres, as cv2.resize) of (B, h, w) to (B, H, W)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
