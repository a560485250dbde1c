"""Two detection tiers for a crowd camera: when the full-cost pass runs, and how its boxes join the cheap ones.

A crowd camera's small faces need the full-cost detector (a large input, or tiles: ``core.detect.tiled``),
which costs several times the cheap one. With the tracker, it need not run on every detector frame: the
cheap detector runs every k frames as usual (``core.track.schedule``), and the full-cost pass runs on a
slow schedule; its boxes seed tracks that the cheap detector's (weak) matches and the tracker's motion
prediction then follow until the next pass looks at them again.

The full-cost pass is cut into ``n_pieces`` pieces (its tiles; one piece, the whole frame, for a
detector without tiles). One *cycle* (every piece once) takes ``interval`` frames; spread, the pieces run
one at a time, round-robin, evenly over the cycle (every ``interval // n_pieces`` frames), so no single
frame of a live stream stalls on the whole pass; not spread, all pieces run together once per cycle.
The interval backs off (multiplicatively) while the worker is slower than the source, like the cheap
detector's (:func:`core.track.schedule.adapt_detect_every`).
"""

from __future__ import annotations

import math

import numpy as np

from core.detect.tiling import box_ios

BACKOFF_STEP = 1.25  # the interval's factor changes by this per adaptation


def cycle_frames(every: int, every_s: float | None, period_s: float | None, backoff: float) -> int:
    """Frames per cycle of the full-cost pass (every piece once).

    Args:
        every: the configured interval in frames.
        every_s: the configured interval in seconds of media time (None: use ``every``); needs the
            source's frame period, ``every`` is used until it is known.
        period_s: the source's frame period in seconds (None or <= 0: unknown).
        backoff: the current back-off factor (>= 1).

    Returns:
        ``ceil(base * backoff)``, at least 1, where ``base`` is ``every`` or ``every_s / period_s``
        (rounded, at least 1).
    """
    base = float(every)
    if every_s is not None and period_s is not None and period_s > 0:
        base = max(1.0, round(every_s / period_s))
    return max(1, int(math.ceil(base * max(1.0, backoff) - 1e-9)))


def pieces_due(frames_since: int, cycle: int, n_pieces: int, spread: bool) -> int:
    """How many pieces of the full-cost pass run on this frame.

    Args:
        frames_since: frames since the last piece ran (a large number before the first one).
        cycle: frames per cycle (:func:`cycle_frames`).
        n_pieces: pieces in one pass (>= 1).
        spread: one piece at a time, every ``max(1, cycle // n_pieces)`` frames (else all at once every
            ``cycle`` frames).

    Returns:
        0, 1, or ``n_pieces`` (not spread).
    """
    if n_pieces < 1 or cycle < 1:
        raise ValueError(f"n_pieces and cycle must be >= 1, got {n_pieces} and {cycle}")
    if spread:
        return 1 if frames_since >= max(1, cycle // n_pieces) else 0
    return n_pieces if frames_since >= cycle else 0


def adapt_backoff(backoff: float, cost_s: float, period_s: float | None, backoff_max: float) -> float:
    """The back-off factor of the full-cost interval after one batch.

    Args:
        backoff: the current factor (1: the configured interval).
        cost_s: the worker's recent processing time per frame, seconds.
        period_s: the source's frame period (None or <= 0: unknown, keep the factor).
        backoff_max: ceiling of the factor.

    Returns:
        ``backoff * 1.25`` when a frame costs more than 90% of the period (falling behind),
        ``backoff / 1.25`` when it costs less than half of it, else unchanged; within [1, backoff_max].
    """
    if period_s is not None and period_s > 0 and cost_s >= 0:
        if cost_s > 0.9 * period_s:
            backoff *= BACKOFF_STEP
        elif cost_s < 0.5 * period_s:
            backoff /= BACKOFF_STEP
    return float(min(max(backoff, 1.0), max(1.0, backoff_max)))


def _sizes(d: np.ndarray) -> np.ndarray:
    return np.sqrt(np.maximum((d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1]), 1e-6))


def combine_passes(cheap: np.ndarray, seeds: np.ndarray, same_face: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """One frame's detections from the cheap detector and a full-cost piece, with the seeds marked.

    A seed that overlaps a cheap detection (intersection over the smaller box >= ``same_face``, sizes
    within a factor 2) is the same face: the cheap box is kept (its full-frame view gives the tighter box on large faces), with the
    higher of the two scores, and marked seeded (the full-cost pass vouches for it). Seeds that overlap
    no cheap box are added.

    Args:
        cheap: (n, 5) x1, y1, x2, y2, score from the cheap detector.
        seeds: (s, 5) the same from the full-cost piece(s), frame pixels.
        same_face: IoS at or above which a seed and a cheap box are one face.

    Returns:
        (m, 5) float32 detections (the cheap ones first, in order) and (m,) bool, True where seeded.
    """
    cheap = np.asarray(cheap, np.float32).reshape(-1, 5)
    seeds = np.asarray(seeds, np.float32).reshape(-1, 5)
    out = cheap.copy()
    seeded = np.zeros(len(cheap), bool)
    extra = []
    if len(seeds):
        ios = box_ios(seeds[:, :4], cheap[:, :4]) if len(cheap) else np.zeros((len(seeds), 0))
        if ios.size:
            s_seed, s_cheap = _sizes(seeds), _sizes(cheap)
            ratio = np.maximum(s_seed[:, None] / s_cheap[None, :], s_cheap[None, :] / s_seed[:, None])
            ios = np.where(ratio <= 2.0, ios, 0.0)
        for j in np.argsort(-seeds[:, 4], kind="stable"):
            k = int(np.argmax(ios[j])) if ios.shape[1] else -1
            if k >= 0 and ios[j, k] >= same_face:
                seeded[k] = True
                out[k, 4] = max(out[k, 4], seeds[j, 4])
            else:
                extra.append(seeds[j])
    if extra:
        out = np.concatenate([out, np.array(extra, np.float32).reshape(-1, 5)])
        seeded = np.concatenate([seeded, np.ones(len(extra), bool)])
    return out, seeded
