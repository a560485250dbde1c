"""A detection-level screen of a face detector on benchmark clips, before any tracker run.

For the frames looked at, with the benchmark's own per-frame matching (``score.clip_matches``: one-to-one at
``iou``, don't-care faces neither counted nor charged): how many evaluated faces the detector's boxes scoring
at least each score find, and how many boxes scoring at least ``false_score`` lie on no face. A detector setting
worth a tracker run finds more faces at the new-person score without more boxes on nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tools.trackbench.events import Predictions
from tools.trackbench.mot import GroundTruth
from tools.trackbench.score import ScoreOptions, clip_matches


@dataclass
class ScreenCount:
    """Counts of one detector setting over the frames screened.

    Attributes:
        scores: the score thresholds the faces found are counted at.
        false_score: boxes scoring at least this count as false when they lie on no face.
        frames: frames screened.
        faces: evaluated faces in them.
        found: per score, the faces a box scoring at least that matched.
        false: boxes (score >= ``false_score``) matched to no face, don't-care faces excepted.
    """

    scores: tuple[float, ...]
    false_score: float
    frames: int = 0
    faces: int = 0
    found: list[int] = field(default_factory=list)
    false: int = 0

    def __post_init__(self) -> None:
        if not self.found:
            self.found = [0] * len(self.scores)

    def add_clip(self, gt: GroundTruth, dets: dict[int, np.ndarray], iou: float) -> None:
        """Count one clip.

        Args:
            gt: the clip's ground truth.
            dets: 1-based frame index -> (m, 5) ``x1, y1, x2, y2, score`` the detector gave on that frame;
                only these frames are counted (those past the clip's ``seqLength`` are not).
            iou: the match threshold.
        """
        opts = ScoreOptions(iou=iou)
        dets = {f: d for f, d in dets.items() if 1 <= f <= gt.n_frames}
        frames = sorted(dets)
        self.frames += len(frames)
        # one matching per distinct threshold (false_score is usually one of the scores too)
        matched = {t: clip_matches(gt, _predictions(dets, t), opts) for t in {*self.scores, self.false_score}}
        gt_rows = matched[self.false_score][2]  # the evaluated faces do not depend on the boxes
        self.faces += sum(len(gt_rows[f]) for f in frames)
        for k, s in enumerate(self.scores):
            pairs = matched[s][4]
            self.found[k] += sum(len(pairs[f][1]) for f in frames)
        _, _, _, pr_rows, pairs = matched[self.false_score]
        self.false += sum(len(pr_rows[f]) - len(pairs[f][1]) for f in frames)

    def row(self) -> dict:
        """Recall per score and false boxes per frame, as plain numbers."""
        out = {f"recall@{s:g}": (n / self.faces if self.faces else float("nan")) for s, n in zip(self.scores, self.found)}
        out["false_per_frame"] = self.false / self.frames if self.frames else float("nan")
        return {"frames": self.frames, "faces": self.faces, **out}


def _predictions(dets: dict[int, np.ndarray], score: float) -> Predictions:
    frame, xyxy = [], []
    for f, d in sorted(dets.items()):
        d = np.asarray(d, np.float64).reshape(-1, 5)
        d = d[d[:, 4] >= score]
        frame += [f] * len(d)
        xyxy += d[:, :4].tolist()
    return Predictions.from_lists(frame, xyxy, [None] * len(frame))


__all__ = ["ScreenCount"]
