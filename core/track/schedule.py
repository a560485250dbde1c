"""Which tracked faces to classify again on a frame ("detect less, track more").

Classifying every face on every frame costs one 224-px forward per face; a decided person needs far
fewer looks than an undecided one. A face is *due* when it has never been classified, or when as
many frames as its interval have passed since its last classification: ``undecided_every`` for
undecided people and for decided people whose evidence is contested (the latest votes disagree with
the label: a mask may be coming off), ``decided_every`` for the others. At most ``max_per_frame``
faces are classified per frame, the most overdue first (undecided before decided on ties), so a crowd
spreads its cost over frames instead of stalling one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ScheduleParams:
    """Re-classification intervals in frames (1: every frame).

    Attributes:
        undecided_every: classify undecided (and contested) people every this many frames.
        decided_every: classify decided people every this many frames.
        max_per_frame: classify at most this many faces per frame (0: no limit).
    """

    undecided_every: int = 2
    decided_every: int = 10
    max_per_frame: int = 0

    def __post_init__(self) -> None:
        if self.undecided_every < 1 or self.decided_every < 1 or self.max_per_frame < 0:
            raise ValueError("undecided_every and decided_every must be >= 1, max_per_frame >= 0")


def due_for_classification(
    frames_since: np.ndarray, settled: np.ndarray, params: ScheduleParams
) -> np.ndarray:
    """Indices of the faces to classify on this frame.

    Args:
        frames_since: (n,) frames since each face was last classified (a negative value or a very
            large one: never classified).
        settled: (n,) bool, True for a decided, uncontested person.
        params: :class:`ScheduleParams`.

    Returns:
        (m,) int64 indices into the n faces, most overdue first.
    """
    since = np.asarray(frames_since, np.float64).reshape(-1)
    settled = np.asarray(settled, bool).reshape(-1)
    if since.shape != settled.shape:
        raise ValueError(f"frames_since and settled must have the same length, got {since.shape} and {settled.shape}")
    never = since < 0
    interval = np.where(settled, params.decided_every, params.undecided_every).astype(np.float64)
    overdue = np.where(never, np.inf, since / interval)
    due = np.flatnonzero(never | (since >= interval))
    # most overdue first; undecided first on ties
    order = np.lexsort((settled[due].astype(int), -overdue[due]))
    due = due[order]
    if params.max_per_frame:
        due = due[: params.max_per_frame]
    return due.astype(np.int64)


def adapt_detect_every(k: int, cost_s: float, period_s: float | None, k_min: int, k_max: int) -> int:
    """The detector interval for the next frames, backing off while processing is slower than the source.

    Args:
        k: the current interval (frames).
        cost_s: the worker's recent processing time per frame, seconds.
        period_s: the source's frame period, seconds (None or <= 0: unknown, keep ``k``).
        k_min, k_max: bounds (the configured interval and its back-off ceiling).

    Returns:
        ``k + 1`` when a frame costs more than 90% of the period (falling behind), ``k - 1`` when it
        costs less than half of it, else ``k``; always within [k_min, k_max].
    """
    if period_s is None or not period_s > 0 or not cost_s >= 0:
        return max(k_min, min(k, k_max))
    if cost_s > 0.9 * period_s:
        k += 1
    elif cost_s < 0.5 * period_s:
        k -= 1
    return max(k_min, min(k, k_max))


def detector_interval(k: int, k_min: int, max_gap_s: float, period_s: float | None) -> int:
    """Frames between two detector runs.

    Args:
        k: the (adapted) interval in frames.
        k_min: the configured interval (``k / k_min`` is the back-off factor).
        max_gap_s: the longest media time wanted between two runs when not backing off.
        period_s: the source's frame period (None: unknown, ``k`` is used).

    Returns:
        ``min(k, max(1, round(k / k_min * max_gap_s / period_s)))``: at 25 fps with k = 5 and 0.2 s
        that is 5; at 5 fps it is 1 (every frame).
    """
    if period_s is None or not period_s > 0:
        return max(1, k)
    return int(max(1, min(k, round(k / max(1, k_min) * max_gap_s / period_s))))
