"""What the web view shows, kept up to date by :class:`stream.sinks.web.WebSink` (pipeline thread) and
read by the HTTP handlers (server threads). One lock; readers get plain-JSON copies.

Every source id is redacted before it is stored: nothing here can carry a URL credential.
"""

from __future__ import annotations

import collections
import itertools
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from stream.redact import redact_text
from stream.web.frames import FrameSlot

FPS_WINDOW = 30


def source_key(source_id: str, taken: Iterable[str] = ()) -> str:
    """A URL-safe key for a source (``/sources/<key>.mjpg``): the redacted id reduced to ``[A-Za-z0-9._-]``."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", redact_text(source_id)).strip("_")[:60] or "source"
    key, n, taken = base, 1, set(taken)
    while key in taken:
        n += 1
        key = f"{base}-{n}"
    return key


@dataclass
class SourceView:
    """Live numbers of one source as the page shows them."""

    key: str
    source: str  # redacted id
    state: str = "connecting"
    attempt: int = 0
    message: str = ""
    frames_out: int = 0
    frames_skipped: int = 0
    latency_ms: float | None = None
    last_label: str | None = None
    frame_labels: collections.Counter = field(default_factory=collections.Counter)
    box_labels: collections.Counter = field(default_factory=collections.Counter)
    people: list[dict] = field(default_factory=list)
    times: collections.deque = field(default_factory=lambda: collections.deque(maxlen=FPS_WINDOW + 1))

    @property
    def fps(self) -> float:
        if len(self.times) < 2:
            return 0.0
        span = self.times[-1] - self.times[0]
        return (len(self.times) - 1) / span if span > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "key": self.key,
            "source": self.source,
            "state": self.state,
            "attempt": self.attempt,
            "message": self.message,
            "frames_out": self.frames_out,
            "frames_skipped": self.frames_skipped,
            "fps": round(self.fps, 2),
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "last_label": self.last_label,
            "frame_labels": dict(self.frame_labels),
            "box_labels": dict(self.box_labels),
            "people_in_view": list(self.people),
            "mjpeg": f"/sources/{self.key}.mjpg",
        }


class LiveState:
    """Sources, people, recent events and no-mask snapshots for the page and the JSON API.

    Args:
        source_ids: the run's sources (their order is the page's).
        mjpeg_width, jpeg_quality: for the frame slots.
        events_kept: ring size of ``/api/events``.
        snapshots_kept: newest no-mask snapshots kept.
    """

    def __init__(
        self,
        source_ids: Iterable[str] = (),
        *,
        mjpeg_width: int = 640,
        jpeg_quality: int = 75,
        events_kept: int = 1000,
        snapshots_kept: int = 8,
    ) -> None:
        self._lock = threading.Lock()
        self._mjpeg_width = mjpeg_width
        self._quality = jpeg_quality
        self.started = time.time()
        self.sources: dict[str, SourceView] = {}  # by redacted id
        self.slots: dict[str, FrameSlot] = {}  # by key
        self._events: collections.deque = collections.deque(maxlen=events_kept)
        self._seq = itertools.count(1)
        self.last_seq = 0
        self._snapshots: collections.deque = collections.deque(maxlen=max(1, snapshots_kept))
        self._snap_ids = itertools.count(1)
        self.snapshots_kept = snapshots_kept
        self.people: dict[tuple[str, Any], dict] = {}  # (source, person_id) -> latest decided state
        self.people_counts: collections.Counter = collections.Counter()  # people per current decided label
        self.running = True
        for sid in source_ids:
            self.view(sid)

    def view(self, source_id: str) -> SourceView:
        """The view of a source (created on first use)."""
        sid = redact_text(source_id)
        with self._lock:
            v = self.sources.get(sid)
            if v is None:
                key = source_key(sid, (s.key for s in self.sources.values()))
                v = self.sources[sid] = SourceView(key, sid)
                self.slots[key] = FrameSlot(self._mjpeg_width, self._quality)
            return v

    # ---------------------------------------------------------------- writers (pipeline thread)
    def on_frame(
        self,
        source_id: str,
        *,
        label: str | None,
        box_labels: list[str],
        people: list[dict],
        latency_s: float,
        image: Any,
        now: float | None = None,
    ) -> None:
        """One rendered frame: counts, FPS, latency, people in view and the newest image."""
        v = self.view(source_id)
        now = time.monotonic() if now is None else now
        with self._lock:
            v.frames_out += 1
            v.times.append(now)
            v.latency_ms = 1000.0 * latency_s
            v.last_label = label
            if label is not None:
                v.frame_labels[label] += 1
            v.box_labels.update(box_labels)
            v.people = people
            if v.state in ("connecting", "reconnecting", "disconnected"):
                v.state, v.attempt, v.message = "connected", 0, ""
        self.slots[v.key].put(image)

    def on_skip(self, source_id: str) -> None:
        v = self.view(source_id)
        with self._lock:
            v.frames_skipped += 1

    def on_state(self, source_id: str, state: str, attempt: int, message: str, event: dict) -> None:
        v = self.view(source_id)
        with self._lock:
            v.state, v.attempt, v.message = state, attempt, redact_text(message)
        self.add_event(event)

    def on_person(self, event: dict) -> None:
        """A tracker person event: keeps each person's decided label and the counts per label."""
        src = redact_text(str(event.get("source", "")))
        key = (src, event.get("person_id"))
        kind = event.get("event")
        with self._lock:
            if kind in ("decided", "changed"):
                old = self.people.get(key)
                if old is not None and old.get("label") is not None:
                    self.people_counts[old["label"]] -= 1
                label = event.get("label")
                self.people[key] = {
                    "source": src,
                    "person_id": event.get("person_id"),
                    "label": label,
                    "confidence": event.get("confidence"),
                    "time": event.get("time"),
                }
                if label is not None:
                    self.people_counts[label] += 1
        self.add_event(event)

    def add_event(self, event: dict) -> int:
        """Append a JSON-ready event (source redacted); returns its sequence number."""
        ev = dict(event)
        if "source" in ev:
            ev["source"] = redact_text(str(ev["source"]))
        ev.pop("snapshot", None)  # images stay out of the JSON
        with self._lock:
            seq = next(self._seq)
            ev["seq"] = seq
            self._events.append(ev)
            self.last_seq = seq
        return seq

    def add_snapshot(self, jpeg: bytes, info: dict) -> int:
        """Keep a no-mask snapshot (JPEG bytes) with its alert info; returns its id."""
        if self.snapshots_kept <= 0:
            return 0
        with self._lock:
            sid = next(self._snap_ids)
            self._snapshots.append({**info, "id": sid, "url": f"/snapshots/{sid}.jpg", "_jpeg": jpeg})
        return sid

    # ---------------------------------------------------------------- readers (server threads)
    def status(self) -> dict:
        with self._lock:
            return {
                "running": self.running,
                "uptime_s": round(time.time() - self.started, 1),
                "sources": [v.to_json() for v in self.sources.values()],
                "people_counts": {k: n for k, n in self.people_counts.items() if n > 0},
                "snapshots": [{k: v for k, v in s.items() if k != "_jpeg"} for s in reversed(self._snapshots)],
                "last_event": self.last_seq,
            }

    def people_json(self) -> dict:
        with self._lock:
            return {
                "in_view": {v.source: list(v.people) for v in self.sources.values()},
                "decided": list(self.people.values()),
                "counts": {k: n for k, n in self.people_counts.items() if n > 0},
            }

    def events_since(self, since: int, limit: int = 500) -> dict:
        with self._lock:
            evs = [e for e in self._events if e["seq"] > since][:limit]
            oldest = self._events[0]["seq"] if self._events else self.last_seq + 1
        nxt = evs[-1]["seq"] if evs else max(since, 0)
        return {"events": evs, "next": nxt, "oldest": oldest, "missed": max(0, oldest - since - 1)}

    def snapshot(self, snap_id: int) -> bytes | None:
        with self._lock:
            for s in self._snapshots:
                if s["id"] == snap_id:
                    return s["_jpeg"]
        return None
