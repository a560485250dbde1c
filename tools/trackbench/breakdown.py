"""Where a clip's losses come from: missed faces, false boxes, split people, false people, wrong decisions.

The scorer (``tools/trackbench/score.py``) says *how much* is lost; this says *why*, with the same rules
(evaluated faces, don't-care regions, a per-frame Hungarian match at IoU >= ``iou``):

* **box level** — ``missed_nobox``: an evaluated face with no kept prediction overlapping it at all
  (IoU < 0.1: the detector did not find it and the tracker did not carry it); ``missed_loc``: a prediction
  overlaps it but under the match IoU (a poor box, a drifting prediction); ``false_bg``: a kept prediction
  overlapping no face, evaluated or not (an unannotated background face or a false detection);
  ``false_loc``: a kept unmatched prediction that does overlap a face (the other side of ``missed_loc``).
* **person level** — ``split_extra``: extra ids of fragmented people (a person matched by ``n`` ids adds
  ``n - 1``); ``false_ids``: kept predicted ids never matched to an evaluated face (a false person);
  ``unseen_people``: evaluated people never matched (the detector never found them); ``short_ids``: kept
  predicted ids shown on fewer than ``short_frames`` frames. The count error is
  ``pred - true = false_ids + split_extra - unseen_people - merged`` (``merged``: ids matched to several people).
* **decision level** — every judged segment (as in the scorer) with its outcome and what the person's
  track looked like: frames matched, the largest face, the seconds it was matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tools.trackbench.events import Predictions
from tools.trackbench.linker import iou_matrix
from tools.trackbench.mot import GroundTruth
from tools.trackbench.score import UNDECIDED, ScoreOptions, clip_matches

COUNTS = ("gt_boxes", "matched", "missed_nobox", "missed_loc", "false_bg", "false_loc", "gt_people", "pred_people",
          "split_extra", "false_ids", "unseen_people", "merged", "short_ids")


@dataclass
class Breakdown:
    """Loss counts of one clip (or pooled) and its judged segments."""

    name: str
    counts: dict = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    segments: list = field(default_factory=list)  # dicts: clip, gt_id, label, outcome, pred_ids, frames, max_px, seen_s

    def add(self, other: "Breakdown") -> None:
        for k, v in other.counts.items():
            self.counts[k] += v
        self.segments.extend(other.segments)


def breakdown_clip(gt: GroundTruth, pred: Predictions, opts: ScoreOptions = ScoreOptions(),
                   short_frames: int = 5) -> Breakdown:
    """The loss breakdown of one clip (see the module docstring)."""
    evaluated, keep, _, _, pairs = clip_matches(gt, pred, opts)
    out = Breakdown(gt.name)
    c = out.counts
    matched_pred = {gi: pj for f in pairs for gi, pj in pairs[f][1]}
    for f in range(1, gt.n_frames + 1):
        g_all = np.flatnonzero(gt.frame == f)
        ge = g_all[evaluated[g_all]]
        pk = np.flatnonzero((pred.frame == f) & keep)
        got = {gi for gi, _ in pairs[f][1]}
        used = {pj for _, pj in pairs[f][1]}
        iou_e = iou_matrix(gt.xyxy[ge], pred.xyxy[pk]) if len(ge) and len(pk) else np.zeros((len(ge), len(pk)))
        iou_a = iou_matrix(gt.xyxy[g_all], pred.xyxy[pk]) if len(g_all) and len(pk) else np.zeros((len(g_all), len(pk)))
        c["gt_boxes"] += len(ge)
        c["matched"] += len(got)
        for i, gi in enumerate(ge):
            if gi in got:
                continue
            near = iou_e[i].max() if len(pk) else 0.0
            c["missed_nobox" if near < 0.1 else "missed_loc"] += 1
        for j, pj in enumerate(pk):
            if pj in used:
                continue
            near = iou_a[:, j].max() if len(g_all) else 0.0
            c["false_bg" if near < 0.1 else "false_loc"] += 1
    ev_ids = np.unique(gt.id[evaluated])
    kept_ids = np.unique(pred.person_id[keep])
    c["gt_people"], c["pred_people"] = len(ev_ids), len(kept_ids)
    ids_of_gt: dict[int, set] = {int(g): set() for g in ev_ids}
    gts_of_pred: dict[int, set] = {int(p): set() for p in kept_ids}
    for gi, pj in matched_pred.items():
        ids_of_gt[int(gt.id[gi])].add(int(pred.person_id[pj]))
        gts_of_pred[int(pred.person_id[pj])].add(int(gt.id[gi]))
    c["split_extra"] = sum(max(0, len(v) - 1) for v in ids_of_gt.values())
    c["unseen_people"] = sum(1 for v in ids_of_gt.values() if not v)
    c["false_ids"] = sum(1 for v in gts_of_pred.values() if not v)
    c["merged"] = sum(max(0, len(v) - 1) for v in gts_of_pred.values())
    c["short_ids"] = sum(1 for p in kept_ids if len(np.unique(pred.frame[keep & (pred.person_id == p)])) < short_frames)
    decided = np.array([v not in UNDECIDED for v in pred.person_label], bool)
    side = np.minimum(gt.xyxy[:, 2] - gt.xyxy[:, 0], gt.xyxy[:, 3] - gt.xyxy[:, 1])
    for gid in ev_ids:
        rows = np.flatnonzero(evaluated & (gt.id == gid))
        rows = rows[np.argsort(gt.frame[rows], kind="stable")]
        if side[rows].max() < opts.decision_px:
            continue
        cuts = np.flatnonzero(gt.label[rows][1:] != gt.label[rows][:-1]) + 1
        for seg in np.split(rows, cuts):
            if len(seg) / gt.fps < opts.min_segment_s:
                continue
            ms = [r for r in seg if r in matched_pred]
            if not ms:
                outcome = "missed"
            else:
                pj = matched_pred[ms[-1]]
                outcome = ("undecided" if not decided[pj]
                           else "correct" if pred.person_label[pj] == gt.label[seg[0]] else "wrong")
            out.segments.append({
                "clip": gt.name, "gt_id": int(gid), "label": str(gt.label[seg[0]]), "outcome": outcome,
                "pred_ids": sorted({int(pred.person_id[matched_pred[r]]) for r in ms}),
                "frames": len(seg), "matched": len(ms), "max_px": round(float(side[seg].max()), 1),
                "seen_s": round(len(ms) / gt.fps, 2),
                "final": str(pred.person_label[matched_pred[ms[-1]]]) if ms else None,
            })
    return out


def table(rows: list[Breakdown]) -> str:
    """A Markdown table of the counts of each breakdown, plus the decision outcomes."""
    cols = list(COUNTS) + ["wrong", "undecided"]
    lines = ["| clip | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for b in rows:
        outc = [s["outcome"] for s in b.segments]
        vals = [b.counts[k] for k in COUNTS] + [outc.count("wrong"), outc.count("undecided")]
        lines.append(f"| {b.name} | " + " | ".join(str(v) for v in vals) + " |")
    return "\n".join(lines)
