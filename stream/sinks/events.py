"""JSON Lines events: one object per line, flushed at least every second and on close.

Types::

  {"type": "frame", "source", "frame_index", "time", "pos_ms", "name", "label", "score", "latency_ms", "boxes"}
  {"type": "detection", "source", "frame_index", "time", "label", "score", "box": [x1, y1, x2, y2], "map_score",
   "person_id", "person_label"}
  {"type": "person", "event": "appeared" | "decided" | "changed" | "left", "source", "person_id", ...}
  {"type": "state", "source", "state", "time", "message", "attempt"}
  {"type": "skip", "source", "frame_index", "time", "reason"}
  {"type": "recording", "source", "state": "recording"|"error", "time", "message"}
      (--record: recording started or resumed / a write error such as a full disk; detection goes on)
  {"type": "clip", "event": "start", "source", "path", "trigger": "nomask_run"|"person", "frame_index",
      "time", "pre_roll_s", "person_id"?}   (--clips: a clip file was started; more frames follow)
  {"type": "clip", "event": "end"|"person"|"error", "source", "path", ...}   (its end, a further
      person in it, or a write error)

``time`` is Unix time of capture (frames) or of the change (state); boxes are in frame pixels.
``person_id`` is the box's track (a person, unique per source for the run; null when untracked) and
``person_label`` that person's decided label or ``undecided``; person events are described in
``stream.people``.
``name`` is the image's file name relative to its folder for image-folder sources (``Frame.name``; null
otherwise); detection and skip events of such frames carry it too.
Source ids are redacted again here: no credentials ever reach the file.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np

from stream.errors import UserError
from stream.frames import SourceEvent
from stream.redact import redact_text
from stream.results import FrameResult, SkippedFrame
from stream.sinks.base import Sink, wall_time
from stream.sinks.registry import SinkContext, register_sink

FLUSH_S = 1.0


def _r(v: float | None, nd: int = 4) -> float | None:
    return None if v is None else round(float(v), nd)


def frame_events(result: FrameResult, latency_s: float | None = None) -> list[dict]:
    """The events of one result: a frame event, then one detection event per box."""
    f = result.frame
    src = redact_text(f.source_id)
    t = _r(wall_time(f.capture_time), 3)
    out = [
        {
            "type": "frame",
            "source": src,
            "frame_index": int(f.index),
            "time": t,
            "pos_ms": _r(f.pos_ms, 1),
            "name": f.name,
            "label": result.label,
            "score": _r(result.score),
            "latency_ms": _r(None if latency_s is None else 1000 * latency_s, 1),
            "boxes": len(result.detections),
        }
    ]
    for d in result.detections:
        out.append(
            {
                "type": "detection",
                "source": src,
                "frame_index": int(f.index),
                "time": t,
                "label": d.label,
                "score": _r(d.score),
                "box": [round(float(v), 1) for v in d.box],
                "map_score": _r(d.map_score),
                "person_id": d.track_id,
                "person_label": d.data.get("person_label"),
            }
        )
        if f.name is not None:
            out[-1]["name"] = f.name
    return out


def state_event(ev: SourceEvent) -> dict:
    return {
        "type": "state",
        "source": redact_text(ev.source_id),
        "state": ev.state.value,
        "time": _r(wall_time(ev.time), 3),
        "message": redact_text(ev.message),
        "attempt": int(ev.attempt),
    }


@dataclass(frozen=True)
class EventsOptions:
    """``sinks.events``: the JSON Lines events file (None: no events)."""

    events: str | None = None


@register_sink("events", EventsOptions, flat=True)
class EventsSink(Sink):
    """Events to a ``.jsonl`` file (created with its parent directory; truncated)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f: IO[str] | None = open(self.path, "w", encoding="utf-8")
        except OSError as exc:
            raise UserError(f"events {self.path}: cannot be written ({exc.strerror or exc})") from None
        self._last_flush = time.monotonic()
        self.lines = 0

    @classmethod
    def from_options(cls, opts: EventsOptions, ctx: SinkContext) -> "EventsSink | None":
        """The sink for ``sinks.events`` (None when unset)."""
        return cls(opts.events) if opts.events else None

    def _emit(self, obj: dict) -> None:
        if self._f is None:
            return
        self._f.write(json.dumps(obj, separators=(",", ":"), default=_json_default) + "\n")
        self.lines += 1
        now = time.monotonic()
        if now - self._last_flush >= FLUSH_S:
            self._f.flush()
            self._last_flush = now

    def emit(self, obj: dict) -> None:
        """One more event from another sink (recording state, clip); same thread as ``write``."""
        self._emit(obj)

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        for obj in frame_events(result, time.monotonic() - result.frame.capture_time):
            self._emit(obj)

    def event(self, ev: SourceEvent) -> None:
        self._emit(state_event(ev))

    def skip(self, item: SkippedFrame) -> None:
        f = item.frame
        self._emit(
            {
                "type": "skip",
                "source": redact_text(f.source_id),
                "frame_index": int(f.index),
                "time": _r(wall_time(f.capture_time), 3),
                "reason": item.reason,
                **({"name": f.name} if f.name is not None else {}),
            }
        )

    def person(self, event: dict) -> None:
        self._emit(event)

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            try:
                f.flush()
            finally:
                f.close()


def _json_default(o: object) -> object:
    if isinstance(o, np.generic):
        return o.item()
    return str(o)
