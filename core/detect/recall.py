"""Detector recall against annotated face boxes: one-to-one matching, counts by label and size.

Used by ``tools/detector_recall.py`` and the recall test; pure numpy.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from core.detect.geometry import box_iou

# face size = sqrt(box area) in frame pixels; bucket upper bounds (exclusive)
SIZE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("<16px", 16.0),
    ("16-32px", 32.0),
    ("32-64px", 64.0),
    (">=64px", float("inf")),
)


def size_bucket(xyxy) -> str:
    """Bucket name of a box by sqrt(area)."""
    s = float(np.sqrt(max(0.0, xyxy[2] - xyxy[0]) * max(0.0, xyxy[3] - xyxy[1])))
    for name, hi in SIZE_BUCKETS:
        if s < hi:
            return name
    return SIZE_BUCKETS[-1][0]  # pragma: no cover - inf bound


def match_pairs(gt: np.ndarray, dets: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy one-to-one matching, detections in descending score order (VOC style): each detection
    takes the free ground-truth box it overlaps most, when that IoU is >= ``iou_threshold``.

    Args:
        gt: (g, 4) xyxy ground-truth boxes.
        dets: (d, 5) xyxy+score detections.
        iou_threshold: a pair counts when IoU >= this.

    Returns:
        (d,) int64: the index of the ground-truth box each detection matched, -1 for none.
    """
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 5)
    owner = np.full(len(dets), -1, dtype=np.int64)
    if len(gt) == 0 or len(dets) == 0:
        return owner
    taken = np.zeros(len(gt), dtype=bool)
    iou = box_iou(dets, gt)
    for d in np.argsort(-dets[:, 4], kind="stable"):
        cand = np.where(taken, -1.0, iou[d])
        g = int(np.argmax(cand))
        if cand[g] >= iou_threshold:
            taken[g] = True
            owner[d] = g
    return owner


def match(gt: np.ndarray, dets: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """:func:`match_pairs` as hit flags: (gt_hit (g,) bool, det_hit (d,) bool)."""
    owner = match_pairs(gt, dets, iou_threshold)
    gt_hit = np.zeros(len(np.asarray(gt).reshape(-1, 4)), dtype=bool)
    gt_hit[owner[owner >= 0]] = True
    return gt_hit, owner >= 0


@dataclass
class RecallCounter:
    """Accumulates hits per (IoU threshold, group) where groups are ``all``, each label and each size bucket."""

    ious: tuple[float, ...] = (0.5, 0.3)
    total: dict = field(default_factory=lambda: defaultdict(int))
    hits: dict = field(default_factory=lambda: defaultdict(int))
    images: int = 0
    detections: int = 0
    det_matched: dict = field(default_factory=lambda: defaultdict(int))

    def add(self, gt_boxes: list[dict], dets: np.ndarray) -> None:
        """One image: ``gt_boxes`` = [{label, xyxy}], ``dets`` (n, 5)."""
        self.images += 1
        self.detections += len(dets)
        gt = np.array([b["xyxy"] for b in gt_boxes], dtype=np.float64).reshape(-1, 4)
        groups = [("all", b["label"], size_bucket(b["xyxy"])) for b in gt_boxes]
        for g in groups:
            for key in g:
                self.total[key] += 1
        for t in self.ious:
            gt_hit, det_hit = match(gt, dets, t)
            self.det_matched[t] += int(det_hit.sum())
            for g, hit in zip(groups, gt_hit):
                for key in g:
                    self.hits[(t, key)] += int(hit)

    def masked_recall(self, iou: float) -> float:
        """Recall over with_mask + mask_weared_incorrect faces together (nan when there are none)."""
        keys = ("with_mask", "mask_weared_incorrect")
        n = sum(self.total.get(k, 0) for k in keys)
        return sum(self.hits.get((iou, k), 0) for k in keys) / n if n else float("nan")

    def matched_fraction(self, iou: float) -> float:
        """Share of detections that matched an annotated face at ``iou`` (nan without detections)."""
        return self.det_matched.get(iou, 0) / self.detections if self.detections else float("nan")

    def recall(self, key: str, iou: float) -> float:
        """Fraction of ``key``'s boxes matched at ``iou`` (nan when there are none)."""
        n = self.total.get(key, 0)
        return self.hits.get((iou, key), 0) / n if n else float("nan")
