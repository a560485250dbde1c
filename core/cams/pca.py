"""Batched PCA of last-conv activations with a deterministic component sign.

For one image, X is the (N, C) matrix of activations (N = h*w positions, C channels),
centred per channel over positions (Algorithm 2, step "subtract the mean"). With the
thin SVD X = U S Vᵀ, the projection of X on component k is X v_k = s_k u_k.

Which decomposition: at 224 px the Gram matrix X Xᵀ is N×N = 49×49, while the
covariance Xᵀ X is C×C = 512×512 (ResNet18) or 1280×1280 (MobileNetV2). An
eigendecomposition costs O(n³), so the Gram route is ~(512/49)³ ≈ 1000× cheaper
per image for ResNet18; it is also the one whose eigenvectors *are* the
projections we need (u_k). When N > C (very large inputs) the covariance route is
the smaller one, and ``batched_pca`` switches to it.

Sign convention: each component's sign is arbitrary (u_k, v_k) -> (-u_k, -v_k).
We flip it so that its projection correlates positively with the channel-summed
activation map a = Σ_c A_c. Because u_k has zero mean, corr(s_k u_k, a) has the
sign of u_kᵀ X 1 = s_k · Σ_c v_kc, i.e. the sign of the sum of the component's
channel loadings: the component points where most channels fire. A component
whose loadings sum to exactly 0 keeps the sign +1 (ties are rare and harmless).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PCAResult:
    """Principal components of a batch, sorted by decreasing variance.

    Attributes:
        proj: (B, N, R) projections X v_k = s_k u_k, sign-fixed, R = min(N, C).
        var: (B, R) eigenvalues s_k² (unnormalised variances), descending, >= 0.
        ratio: (B, R) explained-variance ratio; all zeros where the total variance is 0.
        total: (B,) total variance Σ_k s_k².
    """

    proj: Tensor
    var: Tensor
    ratio: Tensor
    total: Tensor


def flatten_positions(acts: Tensor) -> Tensor:
    """(B, C, h, w) activations -> (B, N=h*w, C) centred per channel over positions."""
    x = acts.flatten(2).transpose(1, 2)
    return x - x.mean(dim=1, keepdim=True)


def fix_signs(proj: Tensor, x: Tensor) -> Tensor:
    """Apply the sign convention to projections.

    Args:
        proj: (B, N, R) projections of the centred X on each component.
        x: (B, N, C) the centred X itself.

    Returns:
        (B, N, R) projections, each flipped so it correlates positively with the
        channel sum of X (equivalently: its loadings Σ_c v_kc are >= 0).
    """
    channel_sum = x.sum(dim=2, keepdim=True)  # (B, N, 1)
    dots = (proj * channel_sum).sum(dim=1, keepdim=True)  # (B, 1, R)
    sign = torch.where(dots < 0, -1.0, 1.0).to(proj.dtype)
    return proj * sign


# How CUDA batches decompose their 49×49 Gram matrices. cuSOLVER's batched Jacobi
# eigensolver only takes matrices up to 32×32, so for 224-px inputs ``torch.linalg.eigh``
# calls the solver once per image on CUDA. Measured on an H200 (tools/map_bench.py,
# 128 images of 512×7×7): "eigh" 86 ms, "cpu-eigh" 20 ms, "gesvda" 1.2 ms, with [0, 1]
# maps within 9e-5 of "cpu-eigh".
#   "gesvda":   cuSOLVER's batched tall-matrix SVD of Xᵀ (torch.linalg.svd driver="gesvda");
#               the default; falls back to "cpu-eigh" if the driver is unavailable;
#   "cpu-eigh": send the Gram matrices (1.2 MB for 128 images) to the CPU, eigh there,
#               bring the eigenvectors back;
#   "eigh":     torch.linalg.eigh on the GPU.
CUDA_PCA_SOLVER = "gesvda"
CUDA_PCA_SOLVERS = ("cpu-eigh", "eigh", "gesvda")


def _eigh(mat: Tensor) -> tuple[Tensor, Tensor]:
    """``torch.linalg.eigh`` of a (B, n, n) stack, on the CPU for CUDA input when so configured."""
    if mat.is_cuda and CUDA_PCA_SOLVER != "eigh" and mat.shape[-1] > 32:
        evals, evecs = torch.linalg.eigh(mat.cpu())
        return evals.to(mat.device, non_blocking=True), evecs.to(mat.device, non_blocking=True)
    return torch.linalg.eigh(mat)


def _gesvda(x: Tensor) -> tuple[Tensor, Tensor] | None:
    """Singular values (B, N) and Vᵀ (B, N, N) of the centred (B, N, C) X via Xᵀ, or None if unsupported."""
    try:
        _, sv, vh = torch.linalg.svd(x.transpose(1, 2), full_matrices=False, driver="gesvda")  # Xᵀ = V S Uᵀ
    except (RuntimeError, NotImplementedError):
        return None
    return sv, vh


def batched_pca(acts: Tensor) -> PCAResult:
    """PCA of each image's (positions × channels) activation matrix, batched.

    Args:
        acts: (B, C, h, w) finite activations. Computed in float32 (float64 if given).

    Returns:
        PCAResult with R = min(h*w, C) components per image.
    """
    dtype = torch.float64 if acts.dtype == torch.float64 else torch.float32
    x = flatten_positions(acts.to(dtype))  # (B, N, C)
    b, n, c = x.shape
    svd = _gesvda(x) if n <= c and x.is_cuda and CUDA_PCA_SOLVER == "gesvda" else None
    if svd is not None:
        sv, vh = svd
        var = sv * sv  # descending
        proj = vh.transpose(1, 2) * sv.unsqueeze(1)  # s_k u_k
    elif n <= c:
        gram = x @ x.transpose(1, 2)  # (B, N, N) = U S² Uᵀ
        evals, evecs = _eigh(gram)  # ascending
        evals, evecs = evals.flip(-1), evecs.flip(-1)
        var = evals.clamp_min(0)
        proj = evecs * var.sqrt().unsqueeze(1)  # s_k u_k
    else:
        cov = x.transpose(1, 2) @ x  # (B, C, C) = V S² Vᵀ
        evals, evecs = _eigh(cov)
        evals, evecs = evals.flip(-1), evecs.flip(-1)
        var = evals.clamp_min(0)
        proj = x @ evecs  # X v_k
    proj = fix_signs(proj, x)
    total = var.sum(dim=1)
    safe = torch.where(total > 0, total, torch.ones_like(total))
    ratio = torch.where(total.unsqueeze(1) > 0, var / safe.unsqueeze(1), torch.zeros_like(var))
    return PCAResult(proj=proj, var=var, ratio=ratio, total=total)


def components_for_fraction(ratio: Tensor, fraction: float) -> Tensor:
    """Per image, the smallest n whose cumulative explained-variance ratio exceeds ``fraction``.

    This is the paper's Algorithm 1 ("sum first nth until sum > 0.9") and matches
    scikit-learn's ``PCA(n_components=fraction)``.

    Args:
        ratio: (B, R) explained-variance ratios, descending.
        fraction: in (0, 1].

    Returns:
        (B,) long tensor in [1, R]; 1 where the variance is all zero.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"variance fraction must be in (0, 1], but got {fraction}")
    cum = ratio.cumsum(dim=1)
    n = (cum <= fraction).sum(dim=1) + 1
    n = torch.where(cum[:, -1] > 0, n, torch.ones_like(n))
    return n.clamp(1, ratio.shape[1])
