"""SSD/RetinaFace training targets and loss: prior matching, box encoding, hard-negative mining.

Liu et al., "SSD: Single Shot MultiBox Detector", ECCV 2016; Deng et al., "RetinaFace", CVPR 2020.
Priors and decoding are the detector's own (``core.detect.retinaface``: [cx, cy, w, h] pixels,
variances 0.1 / 0.2); :func:`encode_boxes` is the exact inverse of its ``decode_boxes``.

Matching (per image): a prior is positive when its best IoU with a face is >= ``pos_iou`` (0.35, as
RetinaFace), and every face also claims its own best prior (so faces smaller than the 16 px anchors
still get one), unless even that IoU is below ``min_best_iou`` (0.2): such a face is too small to
learn and is *ignored*, as are faces marked ignore by the caller (cut by a crop's edge): priors that
overlap an ignored face by IoU >= ``ignore_iou`` are neither positive nor negative.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from core.detect.retinaface import VARIANCES

IGNORE = -1


@dataclass(frozen=True)
class MatchParams:
    """Thresholds of :func:`match_priors` and the negative share of :func:`hard_negatives`."""

    pos_iou: float = 0.35
    min_best_iou: float = 0.2
    ignore_iou: float = 0.05
    neg_ratio: int = 3
    min_negatives: int = 8  # per image, so patches without faces still teach background


def center_to_xyxy(p: torch.Tensor) -> torch.Tensor:
    """(N, 4) [cx, cy, w, h] -> (N, 4) [x1, y1, x2, y2]."""
    return torch.cat([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2], dim=1)


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of (G, 4) and (N, 4) xyxy boxes -> (G, N); 0 where the union is empty."""
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def encode_boxes(boxes: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """SSD regression targets of (N, 4) xyxy ``boxes`` against (N, 4) [cx, cy, w, h] ``priors`` -> (N, 4).

    Inverse of ``core.detect.retinaface.decode_boxes``: centre offset / (0.1 * prior size),
    log(size / prior size) / 0.2.
    """
    c = (boxes[:, :2] + boxes[:, 2:]) / 2
    wh = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1e-6)
    return torch.cat(
        [(c - priors[:, :2]) / (VARIANCES[0] * priors[:, 2:]), torch.log(wh / priors[:, 2:]) / VARIANCES[1]], dim=1
    )


def match_priors(
    gt: torch.Tensor, ignore: torch.Tensor, priors: torch.Tensor, params: MatchParams = MatchParams()
) -> tuple[torch.Tensor, torch.Tensor]:
    """Assign faces to priors for one image.

    Args:
        gt: (G, 4) xyxy face boxes in input pixels (G may be 0).
        ignore: (G,) bool, faces to ignore (never positive; their overlapping priors never negative).
        priors: (N, 4) [cx, cy, w, h].
        params: thresholds.

    Returns:
        labels (N,) int64: 1 positive, 0 negative, :data:`IGNORE`; and loc targets (N, 4) (zero where not
        positive) from :func:`encode_boxes`.
    """
    n = priors.shape[0]
    labels = torch.zeros(n, dtype=torch.long)
    targets = torch.zeros(n, 4)
    if gt.shape[0] == 0:
        return labels, targets
    iou = pairwise_iou(gt, center_to_xyxy(priors))  # (G, N)
    best_prior_iou, best_prior = iou.max(dim=1)
    ignore = ignore | (best_prior_iou < params.min_best_iou)
    live = ~ignore
    if ignore.any():
        labels[(iou[ignore] >= params.ignore_iou).any(dim=0)] = IGNORE
    if not live.any():
        return labels, targets
    live_idx = torch.nonzero(live).squeeze(1)
    live_iou = iou[live]
    best_gt_iou, best_gt = live_iou.max(dim=0)  # (N,)
    for j, g in enumerate(live_idx.tolist()):  # each face claims its best prior (G is small)
        best_gt[best_prior[g]] = j
        best_gt_iou[best_prior[g]] = 2.0
    pos = best_gt_iou >= params.pos_iou
    labels[pos] = 1
    targets[pos] = encode_boxes(gt[live_idx[best_gt[pos]]], priors[pos])
    return labels, targets


def hard_negatives(neg_loss: torch.Tensor, labels: torch.Tensor, params: MatchParams = MatchParams()) -> torch.Tensor:
    """Hard-negative mining: per image, the ``max(neg_ratio * positives, min_negatives)`` negatives with
    the largest classification loss (at most all of them).

    Args:
        neg_loss: (B, N) classification loss of each prior as background.
        labels: (B, N) from :func:`match_priors`.
        params: ``neg_ratio``, ``min_negatives``.

    Returns:
        (B, N) bool, the chosen negatives.
    """
    is_neg = labels == 0
    n_pos = (labels == 1).sum(dim=1)
    k = torch.minimum(torch.clamp(params.neg_ratio * n_pos, min=params.min_negatives), is_neg.sum(dim=1))
    score = torch.where(is_neg, neg_loss, torch.full_like(neg_loss, -float("inf")))
    rank = score.argsort(dim=1, descending=True).argsort(dim=1)
    return is_neg & (rank < k[:, None])


def detection_loss(
    loc: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    params: MatchParams = MatchParams(),
    loc_weight: float = 2.0,
) -> tuple[torch.Tensor, dict[str, float]]:
    """MultiBox loss: ``loc_weight`` * smooth-L1 on positives + cross-entropy on positives and mined
    negatives, both divided by the number of positives in the batch (at least 1).

    Args:
        loc: (B, N, 4) predicted regression; logits: (B, N, 2) face/background logits (index 1 = face).
        labels: (B, N) from :func:`match_priors`; targets: (B, N, 4) loc targets.

    Returns:
        The scalar loss and {"loc", "cls", "positives"} for logging.
    """
    pos = labels == 1
    n_pos = max(int(pos.sum()), 1)
    loc_loss = F.smooth_l1_loss(loc[pos], targets[pos], reduction="sum") / n_pos
    ce = F.cross_entropy(logits.reshape(-1, 2), labels.clamp(min=0).reshape(-1), reduction="none").view(labels.shape)
    with torch.no_grad():
        neg = hard_negatives(ce.detach(), labels, params)
    cls_loss = ce[pos | neg].sum() / n_pos
    total = loc_weight * loc_loss + cls_loss
    return total, {"loc": loc_loss.item(), "cls": cls_loss.item(), "positives": float(pos.sum())}
