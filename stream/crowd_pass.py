"""The full-cost ("crowd") detection tier of faces mode with tracking: which frames get it, and running it.

Per source, :class:`CrowdPass` keeps where the full-cost pass stands (frames since its last piece, the next
tile, the back-off factor, the frame period) and asks ``core.track.crowd_schedule`` whether a piece is due
on a frame. A due piece runs beside the cheap detector on that frame; its boxes are combined with the cheap
ones (``combine_passes``) and handed to the tracker as seeds (``FaceTracker.step(seeded=...)``). A source's
first frame gets every piece at once (nobody is tracked yet), later frames one piece at a time (spread). No math
here: the schedule and the combination are in ``core.track.crowd_schedule``, the pieces in
``core.detect.tiled``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.detect.tiled import detect_regions, pass_regions
from core.track.crowd_schedule import adapt_backoff, cycle_frames, pieces_due
from stream.crowd_config import CrowdConfig
from stream.frames import Frame


@dataclass
class _SourceState:
    since: int = 10**9  # frames since the last piece
    cursor: int = 0  # the next tile, round-robin
    backoff: float = 1.0
    period: float | None = None
    last_t: float | None = None
    pieces_run: int = 0


@dataclass(frozen=True)
class Piece:
    """What the full-cost pass looked at on one frame.

    Attributes:
        seeds: (n, 5) float32 its detections, frame pixels.
        region: (x1, y1, x2, y2) the part of the frame it covered (the union of the pieces run).
        hold_frames: frames a track it found stays in view through cheap-pass misses: until the pass
            looks at the same place again (one cycle at the largest back-off, plus the cheap detector's
            interval; a pass that looks there and misses ends the hold sooner).
    """

    seeds: np.ndarray
    region: tuple[float, float, float, float]
    hold_frames: int


class CrowdPass:
    """The full-cost detector on a slow schedule, per source.

    Args:
        detector: the full-cost detector (``core.detect.create_detector`` result; tiled or not).
        cfg: the ``people.crowd`` section.
    """

    def __init__(self, detector: Any, cfg: CrowdConfig) -> None:
        self.detector = detector
        self.cfg = cfg
        self._state: dict[str, _SourceState] = {}

    def state(self, source_id: str) -> _SourceState:
        return self._state.setdefault(source_id, _SourceState())

    def cycle(self, source_id: str) -> int:
        """Frames per cycle for the source now (configured, converted from seconds, backed off)."""
        st = self.state(source_id)
        return cycle_frames(self.cfg.every, self.cfg.every_s, st.period, st.backoff)

    def run(self, frame: Frame, media_t: float, cheap_interval: int) -> Piece | None:
        """Run the pieces due on ``frame`` (frames of one source in order, each once).

        Args:
            frame: the frame.
            media_t: its media time in seconds (``SourcePeople.media_time``), for the frame period.
            cheap_interval: frames between cheap detector runs now (for the hold).

        Returns:
            The :class:`Piece` run, or None when none was due.
        """
        st = self.state(frame.source_id)
        if st.last_t is not None and media_t > st.last_t:
            dt = media_t - st.last_t
            st.period = dt if st.period is None else 0.9 * st.period + 0.1 * dt
        st.last_t = media_t
        regions = pass_regions(self.detector, frame.image.shape[:2])
        cycle = self.cycle(frame.source_id)
        # a source's first frame gets the whole pass (a live camera starting up sees everyone at once), then
        # the pass is spread over the cycle
        n = len(regions) if st.pieces_run == 0 else pieces_due(st.since, cycle, len(regions), self.cfg.spread)
        if n == 0:
            st.since += 1
            return None
        idx = [(st.cursor + j) % len(regions) for j in range(n)]
        st.cursor = (st.cursor + n) % len(regions)
        st.since = 1
        st.pieces_run += n
        chosen = regions[idx]
        seeds = detect_regions(self.detector, frame.image, chosen)
        region = (float(chosen[:, 0].min()), float(chosen[:, 1].min()), float(chosen[:, 2].max()), float(chosen[:, 3].max()))
        # held until the pass looks at the same place again (it ends the hold there when it misses): at most
        # one cycle at the largest back-off, plus the cheap detector's interval
        longest = cycle_frames(self.cfg.every, self.cfg.every_s, st.period, self.cfg.backoff_max)
        return Piece(seeds, region, longest + max(1, cheap_interval))

    def adapt(self, source_id: str, cost_per_frame_s: float) -> None:
        """Back off (or return to) the configured cycle from the worker's cost per frame."""
        st = self.state(source_id)
        st.backoff = adapt_backoff(st.backoff, cost_per_frame_s, st.period, self.cfg.backoff_max)
