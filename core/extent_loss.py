"""An auxiliary training loss that asks the last conv layer's activation to cover the face box.

Beyond the paper. Every map method reads the last conv layer's activations A. With a classifier
trained on labels alone, the blob that A makes is about the same size whatever the face size
(docs/EVALUATION.md), so boxes cut from it are too large for small faces and too small for large
ones. Where a training image's face box is known (the context windows), this loss compares the
channel-mean activation, scaled so its peak is 1, with the share of each cell the box covers:

    s = mean_c A[:, c]                     (B, h, w)
    p = s / max(s)                         per image
    t = area share of each cell in the box (B, h, w), from the mask pooled to h x w
    loss = mean over images with a box of BCE(p, t)

p is clamped to [1e-4, 1 - 1e-4] for the logarithms, so a cell at exactly 0 (or the peak itself)
gets no gradient of its own; the peak still gets one through the scaling of every other cell. After
ReLU6, a mean over the 1280 channels of MobileNetV2's last layer is practically never exactly 0.

It shapes the network, not the map method: HayCAM+, EigenCAM and the gradient methods are
computed exactly as before from the trained network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_EPS = 1e-4


def box_masks(boxes: Tensor, size: int) -> Tensor:
    """(B, 1, size, size) masks, 1 on the pixels whose centre lies in the box, 0 elsewhere.

    Args:
        boxes: (B, 4) (x1, y1, x2, y2) in pixels of a ``size`` x ``size`` image; NaN rows give
            all-zero masks.
    """
    c = torch.arange(size, dtype=torch.float32, device=boxes.device) + 0.5
    b = boxes.float()
    inx = (c[None, :] >= b[:, 0:1]) & (c[None, :] <= b[:, 2:3])  # (B, W)
    iny = (c[None, :] >= b[:, 1:2]) & (c[None, :] <= b[:, 3:4])  # (B, H)
    return (iny[:, :, None] & inx[:, None, :]).float().unsqueeze(1)


def extent_loss(acts: Tensor, masks: Tensor, valid: Tensor) -> Tensor:
    """Binary cross-entropy between the peak-scaled channel-mean activation and the box coverage.

    Args:
        acts: (B, C, h, w) last conv activations (non-negative, e.g. after ReLU/ReLU6).
        masks: (B, 1, H, W) face masks in [0, 1] at input resolution, H and W multiples of h and w.
        valid: (B,) bool, the images whose face box is known.

    Returns:
        Scalar loss (0 when no image is valid), differentiable in ``acts``.
    """
    if not bool(valid.any()):
        return acts.sum() * 0.0
    with torch.autocast(acts.device.type, enabled=False):  # BCE is not autocast-safe; float32 throughout
        a = acts[valid].float().mean(1)  # (V, h, w)
        p = a / a.flatten(1).amax(1).clamp_min(1e-6)[:, None, None]
        t = F.adaptive_avg_pool2d(masks[valid].float(), a.shape[-2:]).squeeze(1)
        return F.binary_cross_entropy(p.clamp(_EPS, 1 - _EPS), t.clamp(0.0, 1.0))
