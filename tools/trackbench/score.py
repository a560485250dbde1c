"""Scoring one clip's predictions against its ground truth, and pooling clips.

**Which ground truth counts.** A GT box is *evaluated* when its ``conf`` is 1 (a with_mask / without_mask
face), its shorter side is at least ``min_face_px`` (10) frame pixels and its visibility (inside the frame,
not under the occluder) is at least ``min_visibility`` (0.5). Other GT boxes are don't-care regions: in
each frame, predictions are first matched (Hungarian, IoU >= ``iou``) to *all* GT boxes, and predictions
matched to a don't-care box are dropped (as TrackEval does for MOT17's distractors). Then:

**Tracking metrics** come from TrackEval (``trackeval`` on PyPI, HOTA / CLEAR / Identity) run on the
evaluated GT and the kept predictions, IoU similarity, threshold ``iou``: IDF1, HOTA (mean over
alpha), MOTA, ID switches; pooled over clips by TrackEval's own ``combine_sequences``.

**The product's metrics** use a per-frame Hungarian match (IoU >= ``iou``) of evaluated GT to kept
predictions:

* *eligible people*: GT identities whose evaluated face reaches ``decision_px`` (16) pixels (shorter
  side) in at least one frame.
* *label segments*: an eligible identity's evaluated frames split into maximal runs of one GT label;
  runs with less than ``min_segment_s`` (1 s) of evaluated frames are too short to decide and are
  counted apart (``short``).
* *person-level decision accuracy*: a segment is **correct** when, at the last frame of the segment in
  which the person is matched, the matched prediction's ``person_label`` (the track's decided label)
  equals the segment's GT label. Undecided at that frame counts as wrong (also reported as ``undecided``).
  A segment in which the person is never matched has no decision to judge: it is reported as ``missed``
  (the detector's recall, which IDF1 and recall measure) and left out. Accuracy = correct / (segments -
  missed), the same population per-frame accuracy is computed on.
* *per-frame accuracy*: over the matched evaluated frames of the same eligible people, the share
  whose per-frame ``label`` equals the GT label.
* *label flips*: for each kept predicted track, in frame order, a change of its decided label
  (``undecided`` skipped) is a *flip* when the new label differs from the GT label of the person it is
  matched to in that frame (or it is matched to nobody); changes that follow the truth are not flips.
  Reported per kept track, next to all label changes.
* *time to decision*: per eligible person, seconds from the first frame it is matched to the first
  frame its matched prediction carries a decided label (never decided: counted apart).
* *unique-person count*: distinct kept predicted ids vs GT identities with at least one evaluated box;
  error = sum over clips of |predicted - true| / sum of true.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from tools.trackbench.events import Predictions
from tools.trackbench.linker import iou_matrix
from tools.trackbench.mot import GroundTruth

UNDECIDED = ("undecided", None, "")


@dataclass(frozen=True)
class ScoreOptions:
    """Rules of the benchmark (see the module docstring)."""

    iou: float = 0.5
    min_face_px: float = 10.0
    min_visibility: float = 0.5
    decision_px: float = 16.0
    min_segment_s: float = 1.0


def match(iou: np.ndarray, thr: float) -> list[tuple[int, int]]:
    """Maximum-IoU one-to-one matching keeping pairs with IoU >= thr: [(row, col)]."""
    if iou.size == 0:
        return []
    cost = np.where(iou >= thr, -iou, 1.0)
    r, c = linear_sum_assignment(cost)
    return [(int(i), int(j)) for i, j in zip(r, c) if iou[i, j] >= thr]


@dataclass
class ClipScore:
    """Counts for one clip (or pooled); ``tracking`` holds TrackEval's per-sequence results."""

    name: str
    tracking: dict = field(default_factory=dict, repr=False)
    segments: int = 0
    correct: int = 0
    undecided: int = 0
    missed: int = 0
    short: int = 0
    frames: int = 0
    frames_correct: int = 0
    tracks: int = 0
    changes: int = 0
    flips: int = 0
    decision_s: list = field(default_factory=list)
    never_decided: int = 0
    gt_people: int = 0
    pred_people: int = 0
    count_abs_error: int = 0
    person_events: dict = field(default_factory=dict)


def _side(b: np.ndarray) -> np.ndarray:
    return np.minimum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])


def clip_matches(gt: GroundTruth, pred: Predictions, opts: ScoreOptions = ScoreOptions()) -> tuple:
    """The benchmark's per-frame matching (see the module docstring).

    Returns:
        (evaluated: (N_gt,) bool, the evaluated GT rows; keep: (N_pred,) bool, predictions not matched to a
        don't-care face; gt_rows / pr_rows: frame -> the evaluated GT rows / kept prediction rows in it;
        pairs: frame -> (IoU (n_eval, n_kept) of that frame, [(gt row, pred row)] matched)).
    """
    evaluated = (gt.conf == 1) & (_side(gt.xyxy) >= opts.min_face_px) & (gt.visibility >= opts.min_visibility)
    keep = np.ones(len(pred.frame), bool)
    gt_rows, pr_rows, pairs = {}, {}, {}
    for f in range(1, gt.n_frames + 1):
        g = np.flatnonzero(gt.frame == f)
        p = np.flatnonzero(pred.frame == f)
        if len(g) and len(p):
            for i, j in match(iou_matrix(gt.xyxy[g], pred.xyxy[p]), opts.iou):
                if not evaluated[g[i]]:
                    keep[p[j]] = False
        ge, pk = g[evaluated[g]], p[keep[p]]
        gt_rows[f], pr_rows[f] = ge, pk
        sim = iou_matrix(gt.xyxy[ge], pred.xyxy[pk])
        pairs[f] = (sim, [(int(ge[i]), int(pk[j])) for i, j in match(sim, opts.iou)])
    return evaluated, keep, gt_rows, pr_rows, pairs


def score_clip(gt: GroundTruth, pred: Predictions, opts: ScoreOptions = ScoreOptions()) -> ClipScore:
    """Score one clip (predictions must carry person ids; link untracked ones first)."""
    evaluated, keep, gt_rows, pr_rows, pairs = clip_matches(gt, pred, opts)
    out = ClipScore(gt.name, person_events=dict(pred.person_events))
    out.tracking = _trackeval(gt, pred, gt_rows, pr_rows, pairs, opts.iou)
    matched_pred = {gi: pj for f in pairs for gi, pj in pairs[f][1]}  # gt row -> pred row
    gt_of_pred = {pj: gi for gi, pj in matched_pred.items()}
    decided = np.array([v not in UNDECIDED for v in pred.person_label], bool)

    # people and segments
    ev_ids = np.unique(gt.id[evaluated])
    out.gt_people = len(ev_ids)
    kept_ids = np.unique(pred.person_id[keep])
    out.pred_people = len(kept_ids)
    out.count_abs_error = abs(out.pred_people - out.gt_people)
    for pid_ in ev_ids:
        rows = np.flatnonzero(evaluated & (gt.id == pid_))
        rows = rows[np.argsort(gt.frame[rows], kind="stable")]
        if _side(gt.xyxy[rows]).max() < opts.decision_px:
            continue
        m = [r for r in rows if r in matched_pred]
        for r in m:
            out.frames += 1
            out.frames_correct += int(pred.label[matched_pred[r]] == gt.label[r])
        if m:
            first = gt.frame[m[0]]
            dec = [r for r in m if decided[matched_pred[r]]]
            if dec:
                out.decision_s.append(float(gt.frame[dec[0]] - first) / gt.fps)
            else:
                out.never_decided += 1
        cuts = np.flatnonzero(gt.label[rows][1:] != gt.label[rows][:-1]) + 1
        for seg in np.split(rows, cuts):
            if len(seg) / gt.fps < opts.min_segment_s:
                out.short += 1
                continue
            out.segments += 1
            ms = [r for r in seg if r in matched_pred]
            if not ms:
                out.missed += 1
                continue
            pj = matched_pred[ms[-1]]
            if not decided[pj]:
                out.undecided += 1
            elif pred.person_label[pj] == gt.label[seg[0]]:
                out.correct += 1

    # flips per kept track
    for tid in kept_ids:
        rows = np.flatnonzero(keep & (pred.person_id == tid))
        rows = rows[np.argsort(pred.frame[rows], kind="stable")]
        out.tracks += 1
        last = None
        for r in rows:
            if not decided[r]:
                continue
            lab = pred.person_label[r]
            if last is not None and lab != last:
                out.changes += 1
                g = gt_of_pred.get(int(r))
                if g is None or gt.label[g] != lab:
                    out.flips += 1
            last = lab
    return out


def _trackeval(gt, pred, gt_rows, pr_rows, pairs, thr: float) -> dict:
    """TrackEval's HOTA, CLEAR and Identity on one clip (ids remapped to 0..n-1 as it requires)."""
    from trackeval.metrics import CLEAR, HOTA, Identity

    gmap = {int(v): k for k, v in enumerate(np.unique(np.concatenate([gt.id[r] for r in gt_rows.values()] or [[]])))}
    pall = np.concatenate([pred.person_id[r] for r in pr_rows.values()] or [[]])
    pmap = {int(v): k for k, v in enumerate(np.unique(pall))}
    frames = sorted(gt_rows)
    data = {
        "num_timesteps": len(frames),
        "gt_ids": [np.array([gmap[int(v)] for v in gt.id[gt_rows[f]]], int) for f in frames],
        "tracker_ids": [np.array([pmap[int(v)] for v in pred.person_id[pr_rows[f]]], int) for f in frames],
        "similarity_scores": [pairs[f][0] for f in frames],
        "num_gt_ids": len(gmap),
        "num_tracker_ids": len(pmap),
        "num_gt_dets": int(sum(len(gt_rows[f]) for f in frames)),
        "num_tracker_dets": int(sum(len(pr_rows[f]) for f in frames)),
        "seq": gt.name,
    }
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        for m in (HOTA({"PRINT_CONFIG": False}), CLEAR({"THRESHOLD": thr, "PRINT_CONFIG": False}),
                  Identity({"THRESHOLD": thr, "PRINT_CONFIG": False})):
            out[m.get_name()] = (m, m.eval_sequence(data))
    return out


def pool(scores: list[ClipScore], name: str = "all") -> ClipScore:
    """Sum the counts of several clips; tracking metrics combined by TrackEval."""
    out = ClipScore(name)
    for s in scores:
        for k, v in asdict(s).items():
            if k in ("name", "tracking"):
                continue
            if k == "person_events":
                for e, n in v.items():
                    out.person_events[e] = out.person_events.get(e, 0) + n
            elif isinstance(v, list):
                getattr(out, k).extend(v)
            else:
                setattr(out, k, getattr(out, k) + v)
    if scores:
        for key, (metric, _) in scores[0].tracking.items():
            with contextlib.redirect_stdout(io.StringIO()):
                out.tracking[key] = (metric, metric.combine_sequences({k: s.tracking[key][1] for k, s in enumerate(scores)}))
    return out


def summary(s: ClipScore) -> dict:
    """The headline numbers of a (pooled) score as plain floats/ints (NaN where undefined)."""
    def div(a, b):
        return float(a) / b if b else float("nan")

    t = {k: r for k, (_, r) in s.tracking.items()} if s.gt_people else {}  # nothing to track: undefined
    d = np.array(s.decision_s, float)
    return {
        "IDF1": float(t["Identity"]["IDF1"]) if t else float("nan"),
        "HOTA": float(np.mean(t["HOTA"]["HOTA"])) if t else float("nan"),
        "MOTA": float(t["CLEAR"]["MOTA"]) if t else float("nan"),
        "IDSW": int(t["CLEAR"]["IDSW"]) if t else 0,
        "recall": float(t["CLEAR"]["CLR_Re"]) if t else float("nan"),
        "precision": float(t["CLEAR"]["CLR_Pr"]) if t else float("nan"),
        "person_accuracy": div(s.correct, s.segments - s.missed),
        "segments": s.segments,
        "correct": s.correct,
        "undecided": s.undecided,
        "missed": s.missed,
        "short_segments": s.short,
        "frame_accuracy": div(s.frames_correct, s.frames),
        "frames": s.frames,
        "tracks": s.tracks,
        "flips_per_track": div(s.flips, s.tracks),
        "changes_per_track": div(s.changes, s.tracks),
        "decision_s_median": float(np.median(d)) if len(d) else float("nan"),
        "decision_s_p90": float(np.percentile(d, 90)) if len(d) else float("nan"),
        "never_decided": s.never_decided,
        "gt_people": s.gt_people,
        "pred_people": s.pred_people,
        "count_error": div(s.count_abs_error, s.gt_people),
        "appeared_events": s.person_events.get("appeared"),
        "person_events": dict(s.person_events),
    }
