"""The per-person decision: a capped, weighted vote over a track's classifications.

Every time a tracked face is classified it casts a vote for its top class with a weight

    w = size_weight(face) * confidence_weight(p_top)

* ``size_weight`` is 1 for faces whose shorter side is at least ``small_face_px`` and
  ``small_face_weight`` below (the classifier's weak spot: faces under 16 px);
* ``confidence_weight`` is 0 under ``min_confidence`` (such a vote is ignored, as maskcam ignores
  low scores) and rises linearly to 1 at ``full_confidence``.

The vote keeps one evidence value per class in ``[0, cap]``: a vote adds ``w`` to its class and takes
``w`` from every other class. A person is ``undecided`` until one class leads every other by
``decide_margin`` (and ``min_votes`` votes were cast); the decided label changes only when another
class has led by ``change_margin`` for ``change_delay_s`` seconds without a break. Because the
evidence of a decided class sits at the cap, a single contrary vote (w <= 1) moves the lead by at most
2 and can never flip a decided person when ``cap + change_margin > 2``; a real change (a mask taken
off) flips the evidence within a few votes and is reported after the delay.

Pure: no clocks. Times are the caller's media times in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNDECIDED = "undecided"


@dataclass(frozen=True)
class VoteParams:
    """Vote thresholds (defaults: see ``configs/default.yaml`` and the README for how they were chosen).

    Attributes:
        min_confidence: votes whose top probability is below this are ignored.
        full_confidence: top probability at which a vote gets its full weight.
        small_face_px: faces whose shorter side is under this many pixels are "small".
        small_face_weight: weight of a small face's vote (1 for the others).
        decide_margin: evidence lead that decides an undecided person.
        min_votes: votes (of any weight > 0) needed before a first decision.
        change_margin: lead another class needs over the decided one to start a change.
        change_delay_s: the lead must hold this long (seconds) before the label changes.
        cap: evidence per class is kept in [0, cap].
    """

    min_confidence: float = 0.6
    full_confidence: float = 0.9
    small_face_px: float = 16.0
    small_face_weight: float = 0.5
    decide_margin: float = 3.0
    min_votes: int = 3
    change_margin: float = 2.0
    change_delay_s: float = 1.0
    cap: float = 5.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_confidence < self.full_confidence <= 1.0:
            raise ValueError(
                f"need 0 <= min_confidence < full_confidence <= 1, got {self.min_confidence}, {self.full_confidence}"
            )
        if self.small_face_px < 0 or not 0.0 <= self.small_face_weight <= 1.0:
            raise ValueError("small_face_px must be >= 0 and small_face_weight in [0, 1]")
        if self.decide_margin <= 0 or self.change_margin <= 0 or self.cap <= 0:
            raise ValueError("decide_margin, change_margin and cap must be > 0")
        if self.decide_margin > self.cap:
            raise ValueError(f"decide_margin ({self.decide_margin}) cannot exceed cap ({self.cap})")
        if self.decide_margin + self.change_margin <= 2.0:
            raise ValueError(
                "decide_margin + change_margin must exceed 2 (one vote moves a lead by at most 2), "
                f"got {self.decide_margin} + {self.change_margin}"
            )
        if self.min_votes < 1 or self.change_delay_s < 0:
            raise ValueError("min_votes must be >= 1 and change_delay_s >= 0")

    def weight(self, p_top: float, face_px: float) -> float:
        """The weight of one vote: ``size_weight * confidence_weight`` in [0, 1]."""
        if not np.isfinite(p_top) or p_top < self.min_confidence:
            return 0.0
        c = min(1.0, (p_top - self.min_confidence) / (self.full_confidence - self.min_confidence))
        c = max(c, 1e-3)  # just at min_confidence: a vote, barely
        s = self.small_face_weight if face_px < self.small_face_px else 1.0
        return float(c * s)


@dataclass(frozen=True)
class VoteTransition:
    """A change of a person's label, returned by :meth:`PersonVote.add`.

    Attributes:
        event: ``decided`` (undecided -> a class) or ``changed`` (one class -> another).
        label: the new label.
        previous: the label before (``undecided`` for ``decided``).
        confidence: the mean top-class probability of the votes cast for ``label``, weighted.
        votes: votes cast so far.
    """

    event: str
    label: str
    previous: str
    confidence: float
    votes: int


class PersonVote:
    """The vote of one person (one track).

    Args:
        class_names: the classifier's classes, e.g. ("with_mask", "without_mask").
        params: :class:`VoteParams`.
    """

    def __init__(self, class_names: tuple[str, ...] | list[str], params: VoteParams | None = None) -> None:
        if len(class_names) < 2:
            raise ValueError(f"a vote needs at least 2 classes, got {list(class_names)}")
        self.class_names = tuple(class_names)
        self.params = params or VoteParams()
        k = len(self.class_names)
        self.evidence = np.zeros(k)
        self.prob_sum = np.zeros(k)  # weighted sums of the probabilities voted with, per voted class
        self.weight_sum = np.zeros(k)
        self.label = UNDECIDED
        self.votes = 0
        self.pending: tuple[int, float] | None = None  # (challenger class, media time its lead began)

    def lead(self, k: int) -> float:
        """Evidence of class ``k`` minus the largest evidence of any other class."""
        others = np.delete(self.evidence, k)
        return float(self.evidence[k] - others.max())

    @property
    def decided(self) -> bool:
        return self.label != UNDECIDED

    def confidence(self, label: str | None = None) -> float:
        """Weighted mean top probability of the votes for ``label`` (the current label by default)."""
        label = self.label if label is None else label
        if label == UNDECIDED:
            return 0.0
        k = self.class_names.index(label)
        return float(self.prob_sum[k] / self.weight_sum[k]) if self.weight_sum[k] > 0 else 0.0

    def add(self, probs: np.ndarray, face_px: float, t: float) -> VoteTransition | None:
        """Cast one classification.

        Args:
            probs: (K,) class probabilities of the face crop.
            face_px: the face box's shorter side in frame pixels.
            t: media time of the frame, seconds (non-decreasing).

        Returns:
            The transition this vote caused, or None.
        """
        p = np.asarray(probs, np.float64).reshape(-1)
        if p.shape[0] != len(self.class_names):
            raise ValueError(f"probs has {p.shape[0]} classes, the vote {len(self.class_names)}")
        k = int(np.argmax(p))
        w = self.params.weight(float(p[k]), float(face_px))
        if w > 0:
            self.votes += 1
            self.evidence -= w
            self.evidence[k] += 2 * w
            np.clip(self.evidence, 0.0, self.params.cap, out=self.evidence)
            self.prob_sum[k] += w * p[k]
            self.weight_sum[k] += w
        return self._decide(t)

    def _decide(self, t: float) -> VoteTransition | None:
        prm = self.params
        best = int(np.argmax(self.evidence))
        lead = self.lead(best)
        if not self.decided:
            if self.votes >= prm.min_votes and lead >= prm.decide_margin:
                self.label = self.class_names[best]
                return VoteTransition("decided", self.label, UNDECIDED, self.confidence(), self.votes)
            return None
        cur = self.class_names.index(self.label)
        if best == cur or lead < prm.change_margin:
            self.pending = None
            return None
        if self.pending is None or self.pending[0] != best:
            self.pending = (best, t)
        if t - self.pending[1] >= prm.change_delay_s:
            prev, self.label, self.pending = self.label, self.class_names[best], None
            return VoteTransition("changed", self.label, prev, self.confidence(), self.votes)
        return None

    def tick(self, t: float) -> VoteTransition | None:
        """Re-check the delayed change at media time ``t`` without a new vote (between classifications)."""
        return self._decide(t) if self.pending is not None else None

    @property
    def contested(self) -> bool:
        """A decided person whose evidence no longer backs the label fully (classify them again soon)."""
        if not self.decided:
            return False
        k = self.class_names.index(self.label)
        return self.pending is not None or self.evidence[k] < self.params.cap
