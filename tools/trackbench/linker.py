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

from core.track.tracker import iou_matrix  # the tracker's own IoU: one definition
from tools.trackbench.events import Predictions


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
