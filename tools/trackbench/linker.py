"""The baseline: per-frame detections linked by IoU (no motion model, no vote).

Frame by frame, each detection joins the track whose last box (seen at most ``max_gap`` frames ago)
overlaps it most, greedily from the highest IoU down, if that IoU is at least ``min_iou``; otherwise it
starts a new track. A track's label in each frame is the majority of its per-frame labels so far (ties:
the current frame's label): the simplest "per-person decision", decided from the first frame.
This is what today's every-frame faces mode gives a user who links boxes themselves.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tools.trackbench.events import Predictions


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes (N, 4) x (M, 4) -> (N, M), xyxy."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def link_by_iou(pred: Predictions, min_iou: float = 0.3, max_gap: int = 2) -> Predictions:
    """``pred`` with person_id from greedy IoU linking and person_label = running majority label."""
    n = len(pred.frame)
    pid = np.full(n, -1, np.int64)
    plabel = np.empty(n, dtype=object)
    tracks: list[dict] = []  # {"box", "last", "votes"}
    for f in np.unique(pred.frame):
        idx = np.flatnonzero(pred.frame == f)
        live = [k for k, t in enumerate(tracks) if f - t["last"] <= max_gap + 1]
        taken_t, taken_d = set(), set()
        if live and len(idx):
            iou = iou_matrix(pred.xyxy[idx], np.array([tracks[k]["box"] for k in live]))
            for flat in np.argsort(-iou, axis=None, kind="stable"):
                i, j = divmod(int(flat), len(live))
                if iou[i, j] < min_iou:
                    break
                if i in taken_d or j in taken_t:
                    continue
                taken_d.add(i)
                taken_t.add(j)
                pid[idx[i]] = live[j]
        for i, d in enumerate(idx):
            if pid[d] < 0:
                tracks.append({"box": None, "last": f, "votes": Counter()})
                pid[d] = len(tracks) - 1
            t = tracks[pid[d]]
            t["box"], t["last"] = pred.xyxy[d], f
            t["votes"][pred.label[d]] += 1
            best = max(t["votes"].values())
            tops = [k for k, v in t["votes"].items() if v == best]
            plabel[d] = pred.label[d] if pred.label[d] in tops else sorted(tops)[0]
    return Predictions(pred.frame, pred.xyxy, pred.label, pid + 1, plabel, {})
