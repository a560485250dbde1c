"""Run statistics: per-source FPS / latency / state for the HUD, and the end-of-run summary.

Everything here is updated from the consumer (main) thread only.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np

from stream.frames import SourceEvent, SourceState, SourceStats
from stream.people_summary import PeopleSummary
from stream.redact import redact_text

LATENCY_WINDOW = 100_000  # latencies kept for the percentiles (a long soak keeps the newest)


def state_text(state: SourceState, attempt: int = 0) -> str:
    """HUD text of a connection state: CONNECTED, RECONNECTING 3, DISCONNECTED..."""
    text = state.value.replace("_", " ").upper()
    if state is SourceState.RECONNECTING and attempt:
        text = f"{text} {attempt}"
    return text


@dataclass
class SourceMonitor:
    """Live numbers of one source, shown by the HUD.

    Attributes:
        source_id: redacted id.
        fps: frames out per second over the last ``window`` frames.
        latency_ms: end-to-end latency of the last frame (capture to rendered).
        state / attempt: last connection state seen.
    """

    source_id: str
    window: int = 30
    state: SourceState = SourceState.CONNECTING
    attempt: int = 0
    latency_ms: float = 0.0
    _times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=31))

    @property
    def fps(self) -> float:
        if len(self._times) < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else 0.0

    def on_frame(self, now: float, latency_s: float) -> None:
        self._times.append(now)
        self.latency_ms = 1000.0 * latency_s
        if self.state in (SourceState.CONNECTING, SourceState.RECONNECTING, SourceState.DISCONNECTED):
            self.state, self.attempt = SourceState.CONNECTED, 0

    def on_event(self, ev: SourceEvent) -> None:
        self.state, self.attempt = ev.state, ev.attempt

    @property
    def state_text(self) -> str:
        return state_text(self.state, self.attempt)


class RunSummary:
    """Counters for the whole run, printed at the end.

    ``frames_in``: frames the worker took from the sources; ``frames_out``: frames rendered
    (written/shown); ``frames_skipped``: unusable frames; ``frames_dropped``: frames live
    sources dropped because processing was slower than capture (from ``SourceStats``).
    """

    def __init__(self, class_names: Iterable[str] = ()) -> None:
        self.start = time.monotonic()
        self.end: float | None = None
        self.frames_in = 0
        self.frames_out = 0
        self.frames_skipped = 0
        self.frames_dropped = 0
        self.skip_reasons: collections.Counter = collections.Counter()
        self.frame_classes: collections.Counter = collections.Counter({c: 0 for c in class_names})
        self.detection_classes: collections.Counter = collections.Counter({c: 0 for c in class_names})
        self._lat = collections.deque(maxlen=LATENCY_WINDOW)
        self.monitors: dict[str, SourceMonitor] = {}
        self.stopped_by: str = "end of input"
        self.error: str | None = None
        self.people = PeopleSummary()  # fed with person events by the pipeline

    def monitor(self, source_id: str) -> SourceMonitor:
        sid = redact_text(source_id)
        if sid not in self.monitors:
            self.monitors[sid] = SourceMonitor(sid)
        return self.monitors[sid]

    def add_result(
        self, source_id: str, label: str | None, det_labels: Iterable[str], latency_s: float, now: float
    ) -> None:
        self.frames_out += 1
        self._lat.append(latency_s)
        if label is not None:
            self.frame_classes[label] += 1
        for d in det_labels:
            self.detection_classes[d] += 1
        self.monitor(source_id).on_frame(now, latency_s)

    def add_skip(self, reason: str) -> None:
        self.frames_skipped += 1
        self.skip_reasons[reason.split(" (")[0]] += 1

    def add_source_stats(self, stats: Iterable[SourceStats]) -> None:
        self.frames_dropped = sum(int(s.frames_dropped) for s in stats)

    def finish(self) -> None:
        self.end = time.monotonic()

    @property
    def wall_s(self) -> float:
        return (self.end or time.monotonic()) - self.start

    @property
    def fps(self) -> float:
        return self.frames_out / self.wall_s if self.wall_s > 0 else 0.0

    def latency_ms(self, q: float) -> float:
        """The q-th percentile (0..100) of end-to-end latency in ms (nan when no frame)."""
        if not self._lat:
            return float("nan")
        return 1000.0 * float(np.percentile(np.fromiter(self._lat, float), q))

    def to_dict(self) -> dict:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "frames_dropped": self.frames_dropped,
            "frames_skipped": self.frames_skipped,
            "skip_reasons": dict(self.skip_reasons),
            "wall_s": round(self.wall_s, 3),
            "fps": round(self.fps, 2),
            "latency_p50_ms": round(self.latency_ms(50), 1),
            "latency_p95_ms": round(self.latency_ms(95), 1),
            "frame_classes": dict(self.frame_classes),
            "detection_classes": dict(self.detection_classes),
            "stopped_by": self.stopped_by,
            "error": self.error,
            **({"people": self.people.to_dict()} if self.people.total else {}),
        }

    def format(self) -> str:
        """Human-readable multi-line summary."""
        d = self.to_dict()
        lines = [
            f"maskstream run summary ({self.stopped_by})",
            f"  frames   in {d['frames_in']}  out {d['frames_out']}  dropped {d['frames_dropped']}  "
            f"skipped {d['frames_skipped']}" + (f" {dict(self.skip_reasons)}" if self.skip_reasons else ""),
            f"  speed    {d['fps']:.1f} FPS over {d['wall_s']:.1f} s; latency p50 {d['latency_p50_ms']:.0f} ms, "
            f"p95 {d['latency_p95_ms']:.0f} ms",
        ]
        if any(self.frame_classes.values()):
            lines.append("  frames   " + ", ".join(f"{k} {v}" for k, v in self.frame_classes.items()))
        lines.append("  boxes    " + (", ".join(f"{k} {v}" for k, v in self.detection_classes.items()) or "none"))
        if self.people.total:
            lines.append(self.people.format())
        for m in self.monitors.values():
            lines.append(f"  source   {m.source_id}: {m.state_text}")
        if self.error:
            lines.append(f"  error    {self.error}")
        return "\n".join(lines)
