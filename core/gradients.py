"""Gradients dY_c/dA of a class score with respect to the last conv activations.

For a network that ends in global average pooling and a linear head,
Y_c = b_c + Σ_k W[c, k] · mean_ij A_ij^k, so dY_c/dA_ij^k = W[c, k] / (h·w) at every
position: the gradient methods need no backward pass. ``autograd_grads`` computes
the same thing with ``torch.autograd.grad`` for any head (and for checking).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


def analytic_grads(head_weight: Tensor, target: Tensor, act_shape: torch.Size) -> Tensor:
    """dY_target/dA for a GAP + linear head, without autograd.

    Args:
        head_weight: (K, C) linear head weights.
        target: (B,) class indices.
        act_shape: (B, C, h, w).

    Returns:
        (B, C, h, w) gradient, constant over positions.
    """
    b, c, h, w = act_shape
    g = head_weight[target] / float(h * w)  # (B, C)
    return g.view(b, c, 1, 1).expand(b, c, h, w)


def autograd_grads(head: Callable[[Tensor], Tensor], acts: Tensor, target: Tensor) -> Tensor:
    """dY_target/dA by autograd through ``head`` (activations -> logits).

    Args:
        head: maps (B, C, h, w) activations to (B, K) logits.
        acts: (B, C, h, w).
        target: (B,) class indices.

    Returns:
        (B, C, h, w) gradient (images are independent, so one backward serves the batch).
    """
    with torch.enable_grad():
        a = acts.detach().requires_grad_(True)
        logits = head(a)
        score = logits.gather(1, target.view(-1, 1)).sum()
        (g,) = torch.autograd.grad(score, a)
    return g
