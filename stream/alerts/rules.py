"""When to alert: turns person events, frames and source states into alert dicts. No threads, no I/O;
the caller passes the clock, so tests drive it by hand.

* ``no_mask``: a person DECIDED (or CHANGED to) an alerting label; once per person and per change,
  never per frame. A repeated ``decided`` with the same label is not a new alert.
* ``no_mask_frames``: the frame-level fallback for runs without a tracker: ``fallback_frames``
  consecutive frames of a source show an alerting label; once per run of frames, re-armed after as
  many frames without it. Off for good once any person event arrived.
* ``source_down`` / ``source_up``: a source disconnected, reconnecting or failed for longer than
  ``source_down_s``; ``source_up`` follows when it reconnects after such an alert.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from stream.redact import redact_text

DOWN_STATES = frozenset({"disconnected", "reconnecting", "failed"})


@dataclass
class _Run:
    hits: int = 0
    clear: int = 0
    fired: bool = False


@dataclass
class AlertRules:
    """Alert decisions.

    Args:
        labels: labels that alert.
        fallback_frames: frames of the frame-level fallback (0: off).
        source_down_s: seconds a source may be down before an alert (0: never).
    """

    labels: frozenset = frozenset({"without_mask"})
    fallback_frames: int = 5
    source_down_s: float = 30.0
    person_events_seen: bool = False
    _alerted: dict = field(default_factory=dict)  # (source, person_id) -> label alerted last
    _runs: dict = field(default_factory=dict)  # source -> _Run
    _down_since: dict = field(default_factory=dict)  # source -> (monotonic time, state, message)
    _down_alerted: set = field(default_factory=set)

    def on_person(self, ev: dict) -> dict | None:
        """A tracker person event -> a ``no_mask`` alert or None."""
        self.person_events_seen = True
        kind, label = ev.get("event"), ev.get("label")
        src = redact_text(str(ev.get("source", "")))
        key = (src, ev.get("person_id"))
        if kind == "left":
            self._alerted.pop(key, None)
            return None
        if kind not in ("decided", "changed"):
            return None
        if label not in self.labels:
            self._alerted[key] = label  # a later change back to no mask alerts again
            return None
        if self._alerted.get(key) == label:
            return None
        self._alerted[key] = label
        return {
            "type": "alert",
            "kind": "no_mask",
            "id": f"{src}/person-{ev.get('person_id')}/{ev.get('frame_index')}",
            "source": src,
            "person_id": ev.get("person_id"),
            "frame_index": ev.get("frame_index"),
            "time": ev.get("time"),
            "label": label,
            "previous_label": ev.get("previous_label"),
            "confidence": ev.get("confidence"),
            "frames_seen": ev.get("frames_seen"),
            "box": ev.get("box"),
            "message": f"person {ev.get('person_id')} {'changed to' if kind == 'changed' else 'decided'} {label}",
        }

    def on_frame(
        self, source: str, frame_index: int, t: float, labels: Iterable[str], box: Any = None
    ) -> dict | None:
        """A rendered frame (``labels``: its frame label and box labels) -> a fallback alert or None."""
        if self.fallback_frames <= 0 or self.person_events_seen:
            return None
        src = redact_text(source)
        run = self._runs.setdefault(src, _Run())
        if self.labels.intersection(labels):
            run.hits += 1
            run.clear = 0
            if run.hits >= self.fallback_frames and not run.fired:
                run.fired = True
                return {
                    "type": "alert",
                    "kind": "no_mask_frames",
                    "id": f"{src}/frames-{frame_index}",
                    "source": src,
                    "person_id": None,
                    "frame_index": int(frame_index),
                    "time": t,
                    "label": sorted(self.labels.intersection(labels))[0],
                    "frames": run.hits,
                    "box": None if box is None else [round(float(v), 1) for v in box],
                    "message": f"{run.hits} consecutive frames without a mask (no tracker in this run)",
                }
        else:
            run.clear += 1
            if run.clear >= self.fallback_frames:
                run.hits, run.fired = 0, False
        return None

    def on_state(self, source: str, state: str, now: float, t: float, message: str = "") -> dict | None:
        """A source state change at monotonic ``now`` (Unix ``t``) -> a ``source_up`` alert or None."""
        src = redact_text(source)
        if state in DOWN_STATES:
            self._down_since.setdefault(src, (now, state, redact_text(message)))
            return None
        self._down_since.pop(src, None)
        if state == "connected" and src in self._down_alerted:
            self._down_alerted.discard(src)
            return {"type": "alert", "kind": "source_up", "id": f"{src}/up-{round(t, 3)}", "source": src,
                    "person_id": None, "time": t, "message": "source is back"}
        return None

    def tick(self, now: float, t: float) -> list[dict]:
        """Sources down longer than ``source_down_s`` at monotonic ``now`` -> ``source_down`` alerts (once each)."""
        out = []
        if self.source_down_s <= 0:
            return out
        for src, (since, state, message) in self._down_since.items():
            if src not in self._down_alerted and now - since >= self.source_down_s:
                self._down_alerted.add(src)
                out.append({"type": "alert", "kind": "source_down", "id": f"{src}/down-{round(t, 3)}",
                            "source": src, "person_id": None, "time": t, "state": state,
                            "down_s": round(now - since, 1),
                            "message": f"source {state} for {now - since:.0f} s" + (f" ({message})" if message else "")})
        return out
