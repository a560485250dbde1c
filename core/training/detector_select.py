"""Choosing a fine-tuned face-detector checkpoint on the VAL side (``tools/train_detector.py --select``).

An evaluation is ``{"640@0.5": {...}, "1600@0.3": {...}}`` with, per run-time setting, recall (IoU 0.3)
of ``all`` / ``with_mask`` / ``with_mask>=32px`` faces and ``false_per_image`` (see
``tools.train_detector.evaluate``). Two rules:

- ``all``: mean recall of all faces over the settings (the rule that chose the shipped file).
- ``faces``: faces mode (640 px at 0.5) first. A checkpoint is *eligible* when, against the reference
  evaluation of the same run (the starting model), with_mask recall at 640@0.5 rises by >= 2 points,
  false detections per photo there rise by <= 0.05, all-face recall there drops by <= 1 point and
  with_mask >= 32 px recall does not drop, and at 1600@0.3 (the crowd preset) all-face recall drops by
  <= 1 point and false detections per photo rise by <= 0.5. Eligible checkpoints score their with_mask
  recall at 640@0.5 (minus a tiebreak of 1e-3 x false detections per photo); the rest score -inf, so the
  starting model stays unless one qualifies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FACES, CROWD = "640@0.5", "1600@0.3"
Evaluation = dict[str, dict[str, float]]


@dataclass(frozen=True)
class FacesRule:
    """Margins of the ``faces`` rule (recall as fractions, false detections per photo)."""

    min_gain_with_mask: float = 0.02
    max_false_rise: float = 0.05
    max_all_drop: float = 0.01
    max_large_mask_drop: float = 0.0
    max_crowd_all_drop: float = 0.01
    max_crowd_false_rise: float = 0.5


def mean_all_score(ev: Evaluation) -> float:
    """Mean recall of all faces over the evaluated settings."""
    return float(sum(v["all"] for v in ev.values()) / len(ev))


def faces_failures(ev: Evaluation, ref: Evaluation, rule: FacesRule = FacesRule()) -> list[str]:
    """Which conditions of the ``faces`` rule ``ev`` misses against ``ref`` (empty: eligible)."""
    f, rf, c, rc = ev[FACES], ref[FACES], ev[CROWD], ref[CROWD]
    checks = (
        (f["with_mask"] - rf["with_mask"] >= rule.min_gain_with_mask - 1e-9, "with_mask gain at 640@0.5"),
        (f["false_per_image"] - rf["false_per_image"] <= rule.max_false_rise + 1e-9, "false/photo at 640@0.5"),
        (rf["all"] - f["all"] <= rule.max_all_drop + 1e-9, "all-face recall at 640@0.5"),
        (rf["with_mask>=32px"] - f["with_mask>=32px"] <= rule.max_large_mask_drop + 1e-9, "with_mask>=32px at 640@0.5"),
        (rc["all"] - c["all"] <= rule.max_crowd_all_drop + 1e-9, "all-face recall at 1600@0.3"),
        (c["false_per_image"] - rc["false_per_image"] <= rule.max_crowd_false_rise + 1e-9, "false/photo at 1600@0.3"),
    )
    return [name for ok, name in checks if not ok]


def faces_score(ev: Evaluation, ref: Evaluation, rule: FacesRule = FacesRule()) -> float:
    """with_mask recall at 640@0.5 (tiebreak: fewer false detections) when eligible, else -inf."""
    if faces_failures(ev, ref, rule):
        return -math.inf
    return float(ev[FACES]["with_mask"] - 1e-3 * ev[FACES]["false_per_image"])
