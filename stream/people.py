"""People, not frames: the per-source tracking stage, its per-person state and the person events.

:class:`PeopleStage` holds one :class:`SourcePeople` per source. A ``SourcePeople`` owns the source's
``core.track.FaceTracker`` and one ``core.track.PersonVote`` per person, decides when the face detector
runs and which faces are classified again (``core.track.schedule``), and turns the tracker's and the
votes' transitions into person events, each written exactly once::

    {"type": "person", "event": "appeared", "source", "person_id", "frame_index", "time", "pos_ms", "label", "box"}
    {"type": "person", "event": "decided",  ..., "label", "confidence", "frames_seen", "snapshot"}
    {"type": "person", "event": "changed",  ..., "label", "previous_label", "confidence"}
    {"type": "person", "event": "left",     ..., "label", "seconds_per_label", "first_frame", "last_frame"}

``label`` is the person's decided label or ``undecided``; ``time`` is the Unix time of the frame's capture,
``pos_ms`` its position in a file (None live); durations are media time (file position, else capture time).
The worker thread calls ``track``/``observe``; the pipeline thread calls ``finish_source`` after a source
ended and ``finish_all`` after the worker stopped, so a source is never touched by two threads at once.
No math here: the tracker, the vote and the schedule are ``core.track``.
"""

from __future__ import annotations

import pickle
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np

from core.track import (
    FaceTracker,
    PersonVote,
    ScheduleParams,
    TrackStep,
    adapt_detect_every,
    detector_interval,
    due_for_classification,
)
from core.track.geometry import expand_boxes
from core.track.motion import CUT_NCC, CameraMotion
from stream.frames import Frame
from stream.people_config import PeopleConfig
from stream.redact import redact_text
from stream.sinks.base import safe_name, wall_time


def _r(v: float | None, nd: int = 3) -> float | None:
    return None if v is None else round(float(v), nd)


@dataclass
class Person:
    """One tracked person of one source (state kept by the stage)."""

    person_id: int
    vote: PersonVote
    first_frame: int
    last_frame: int
    first_t: float
    last_t: float
    frames_seen: int = 0
    probs: np.ndarray | None = None  # (K,) last classification
    map_u8: np.ndarray | None = None  # (h, w) last map, at the method's native size (pasted at the box)
    last_classified: int = -1  # frame index of the last classification (scheduled)
    seconds: dict[str, float] = field(default_factory=dict)
    ranges: list[tuple[str, float, float]] = field(default_factory=list)
    segment_start: float = 0.0
    best: tuple[float, np.ndarray] | None = None  # (vote weight * p, crop) for the decided snapshot

    @property
    def label(self) -> str:
        return self.vote.label


class SourcePeople:
    """Tracking, scheduling and voting state of ONE source.

    Args:
        source_id: the source's id.
        class_names: classifier classes.
        cfg: the ``people`` config section.
        snapshot_dir: where decided people's best crop is saved (None: no snapshots).
        margin: boxes are reported enlarged by this fraction per side, clipped to the frame. The pipeline
            passes 0: faces mode reports the face box, as the every-frame path does
            (``stream.processor.reported_faces``); the classifier's crop adds ``worker.face_margin`` on its own.
        live: the source drops frames when the worker falls behind (a camera, a stream): only then does the
            detector interval back off with the load (:meth:`adapt`). A file or folder waits for the worker,
            so it is never behind: there the interval stays ``detect_every`` and the results do not depend on
            the machine's load.
    """

    def __init__(
        self,
        source_id: str,
        class_names: Sequence[str],
        cfg: PeopleConfig,
        snapshot_dir: str | Path | None = None,
        margin: float = 0.0,
        live: bool = True,
    ) -> None:
        self.margin = float(margin)
        self.live = bool(live)
        self.source_id = source_id
        self.src = redact_text(source_id)
        self.class_names = tuple(class_names)
        self.cfg = cfg
        self.vote_params = cfg.vote.to_core()
        self.schedule = cfg.schedule()
        self.tracker = FaceTracker(cfg.tracker.to_core())
        self.people: dict[int, Person] = {}
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        self.detect_every = cfg.detect_every
        self.since_detect = 10**9
        self.detector_runs = 0
        self.frames = 0
        self._t0: float | None = None
        self._last_t: float | None = None
        self._period: float | None = None
        self._last_step: TrackStep | None = None
        self.motion = (
            CameraMotion(zoom=cfg.camera_zoom, cut_ncc=CUT_NCC if cfg.camera_cuts else None)
            if cfg.camera_motion else None
        )
        self._pending: tuple[Frame, np.ndarray | None, bool] | None = None  # camera motion measured ahead of track()

    # ------------------------------------------------------------ time
    def media_time(self, frame: Frame) -> float:
        """Seconds: the file position when known, else capture time since the source's first frame."""
        if frame.pos_ms is not None and np.isfinite(frame.pos_ms):
            return float(frame.pos_ms) / 1000.0
        if self._t0 is None:
            self._t0 = frame.capture_time
        return float(frame.capture_time - self._t0)

    def _event(self, kind: str, p: Person, frame: Frame, **extra: Any) -> dict:
        return {
            "type": "person",
            "event": kind,
            "source": self.src,
            "person_id": int(p.person_id),
            "frame_index": int(frame.index),
            "time": _r(wall_time(frame.capture_time)),
            "pos_ms": _r(frame.pos_ms, 1),
            "label": p.label,
            **extra,
        }

    def report_boxes(self, boxes: np.ndarray, frame: Frame) -> np.ndarray:
        """(N, 4) tracked face boxes -> the boxes reported in events and results (with the margin)."""
        return expand_boxes(boxes, self.margin, frame.image.shape[:2])

    # ------------------------------------------------------------ detect less
    def camera(self, frame: Frame) -> tuple[np.ndarray | None, bool]:
        """The camera's motion into ``frame`` ((2, 3) or None) and whether ``frame`` starts a new scene (a cut).
        Measured once per frame: :meth:`wants_detection` may measure it ahead of :meth:`track`."""
        if self.motion is None:
            return None, False
        if self._pending is None or self._pending[0] is not frame:
            m = self.motion.update(frame.image)
            self._pending = (frame, m, bool(self.motion.last_cut))
        return self._pending[1], self._pending[2]

    def wants_detection(self, frame: Frame | None = None) -> bool:
        """Run the detector on the next frame (``frame``, when given)? Every ``detect_every`` frames, and
        whenever a new face awaits confirmation, nobody is in view (the detector is then the only way to find
        anyone) or ``frame`` starts a new scene (every track ends there)."""
        if self.since_detect + 1 >= self.interval():
            return True
        if frame is not None and self.camera(frame)[1]:
            return True
        # (a tentative track held for the next full-cost pass waits for that pass, not for this detector)
        tentative = any(t.public_id < 0 and t.held_until < self.tracker.frame for t in self.tracker.tracks)
        in_view = self._last_step is not None and len(self._last_step.ids) > 0
        return tentative or not in_view

    def interval(self) -> int:
        """Frames between detector runs: ``detect_every`` (adapted), capped so that no more than
        ``detect_every_s`` of media time (scaled by the back-off) passes between two runs."""
        return detector_interval(self.detect_every, self.cfg.detect_every, self.cfg.detect_every_s, self._period)

    def schedule_now(self) -> ScheduleParams:
        """The re-classification intervals, shrunk at low frame rates by the factor ``detect_every_s`` shrinks
        the detector's interval (at 5 fps undecided people are classified on every frame, decided ones every
        2nd), so a person is decided after about the same media time at any frame rate."""
        k = self.interval()
        if k >= self.detect_every:
            return self.schedule
        f = k / float(self.detect_every)
        s = self.schedule
        return ScheduleParams(
            max(1, round(s.undecided_every * f)), max(1, round(s.decided_every * f)), s.max_per_frame
        )

    def adapt(self, cost_per_frame_s: float) -> None:
        """Back off (or return to) the detector interval from the worker's cost per frame (live sources only)."""
        if not self.live:
            return
        self.detect_every = adapt_detect_every(
            self.detect_every, cost_per_frame_s, self._period, self.cfg.detect_every, self.cfg.detect_every_max
        )

    # ------------------------------------------------------------ track
    def track(
        self, frame: Frame, detections: np.ndarray | None, **seeding: Any
    ) -> tuple[TrackStep, np.ndarray, list[dict]]:
        """One tracker step for ``frame``.

        Args:
            frame: the frame (frames of one source must come in order).
            detections: (n, 5) x1, y1, x2, y2, score, or None when the detector did not run.
            **seeding: the full-cost pass's part (``seeded``, ``seed_region``, ``hold_frames``), passed to
                ``core.track.FaceTracker.step``.

        Returns:
            (the step, indices into ``step.ids`` of the faces to classify on this frame, the
            ``appeared``/``left`` events of this frame).
        """
        t = self.media_time(frame)
        if self._last_t is not None and t > self._last_t:
            dt = t - self._last_t
            self._period = dt if self._period is None else 0.9 * self._period + 0.1 * dt
        self._last_t = t
        self.frames += 1
        if detections is None:
            self.since_detect += 1
        else:
            self.since_detect = 0
            self.detector_runs += 1
        shift, cut = self.camera(frame)
        self._pending = None
        step = self.tracker.step(detections, shift, cut=cut, **seeding)
        self._last_step = step
        events: list[dict] = []
        for pid, last in sorted(step.ended.items()):
            p = self.people.pop(pid, None)
            if p is not None:
                events.append(self._left(p, frame, last))
        for pid in step.confirmed:
            k = int(np.flatnonzero(step.ids == pid)[0])
            p = Person(pid, PersonVote(self.class_names, self.vote_params), frame.index, frame.index, t, t, segment_start=t)
            self.people[pid] = p
            box = self.report_boxes(step.boxes[k : k + 1], frame)[0]
            events.append(self._event("appeared", p, frame, box=[round(float(v), 1) for v in box]))
        ppl = [self.people[int(i)] for i in step.ids]
        since = np.array([frame.index - p.last_classified if p.last_classified >= 0 else -1 for p in ppl])
        settled = np.array([p.vote.decided and not p.vote.contested for p in ppl], bool)
        due = due_for_classification(since, settled, self.schedule_now()) if ppl else np.zeros(0, np.int64)
        for k in due:
            ppl[int(k)].last_classified = frame.index
        return step, due, events

    # ------------------------------------------------------------ vote
    def observe(
        self,
        frame: Frame,
        step: TrackStep,
        classified: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]],
    ) -> tuple[list[dict], list[dict]]:
        """Votes and per-person bookkeeping for one frame after its faces were classified.

        Args:
            frame: the frame.
            step: its tracker step.
            classified: index into ``step.ids`` -> (probs (K,), map (S, S) uint8 or None, crop BGR or None).

        Returns:
            (people in view: dicts person_id, label, box, confidence, probs; the ``decided``/``changed``
            events of this frame).
        """
        t = self.media_time(frame)
        events: list[dict] = []
        people: list[dict] = []
        shown = self.report_boxes(step.boxes, frame)
        for k, pid in enumerate(step.ids):
            p = self.people[int(pid)]
            if p.frames_seen:  # time in view since the previous frame goes to the label held then
                p.seconds[p.label] = p.seconds.get(p.label, 0.0) + max(0.0, t - p.last_t)
            p.frames_seen += 1
            p.last_frame, p.last_t = frame.index, t
            box = step.boxes[k]
            face_px = float(min(box[2] - box[0], box[3] - box[1]))
            tr = None
            if k in classified:
                probs, map_u8, crop = classified[k]
                p.probs = np.asarray(probs, np.float32)
                if map_u8 is not None:
                    p.map_u8 = map_u8
                if crop is not None and not p.vote.decided:  # the best look before the decision
                    w = self.vote_params.weight(float(p.probs.max()), face_px) * face_px
                    if p.best is None or w > p.best[0]:
                        p.best = (w, crop.copy())
                tr = p.vote.add(p.probs, face_px, t)
            else:
                tr = p.vote.tick(t)
            if tr is not None:
                p.ranges.append((tr.previous, p.segment_start, t))
                p.segment_start = t
                if tr.event == "decided":
                    events.append(
                        self._event(
                            "decided",
                            p,
                            frame,
                            confidence=_r(tr.confidence, 4),
                            frames_seen=p.frames_seen,
                            snapshot=self._snapshot(p, frame),
                        )
                    )
                else:
                    events.append(
                        self._event("changed", p, frame, previous_label=tr.previous, confidence=_r(tr.confidence, 4))
                    )
            conf = p.vote.confidence() if p.vote.decided else (float(p.probs.max()) if p.probs is not None else 0.0)
            people.append(
                {
                    "person_id": int(pid),
                    "label": p.label,
                    "box": [round(float(v), 1) for v in shown[k]],
                    "confidence": round(conf, 4),
                    "probs": p.probs,
                }
            )
        return people, events

    def _snapshot(self, p: Person, frame: Frame) -> str | None:
        if self.snapshot_dir is None or p.best is None:
            return None
        path = self.snapshot_dir / f"{safe_name(self.source_id)}-person{p.person_id}-{p.label}-{frame.index:06d}.jpg"
        try:
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            ok = cv2.imwrite(str(path), p.best[1])
        except (OSError, cv2.error):
            ok = False
        p.best = None
        return str(path) if ok else None

    def _left(self, p: Person, frame: Frame, last_frame: int) -> dict:
        p.ranges.append((p.label, p.segment_start, p.last_t))
        ev = self._event(
            "left",
            p,
            frame,
            seconds_per_label={k: round(v, 3) for k, v in sorted(p.seconds.items())},
            first_frame=int(p.first_frame),
            last_frame=int(last_frame),
            first_s=_r(p.first_t),
            last_s=_r(p.last_t),
            ranges=[[lab, _r(a), _r(b)] for lab, a, b in p.ranges if b >= a],
        )
        ev["frame_index"] = int(p.last_frame)
        return ev

    def finish(self, frame: Frame | None = None) -> list[dict]:
        """``left`` events for everyone still tracked (the source ended or the run stopped)."""
        ended = self.tracker.finish()
        out = []
        for pid in sorted(ended):
            p = self.people.pop(pid, None)
            if p is not None:
                f = frame or Frame(self.source_id, p.last_frame, np.zeros((1, 1, 3), np.uint8), time.monotonic())
                out.append(self._left(p, f, ended[pid]))
        return out


class PeopleStage:
    """One :class:`SourcePeople` per source, created on first use.

    Args:
        class_names: classifier classes.
        cfg: the ``people`` config section.
        snapshot_dir: directory for decided people's best crops (None: off).
        margin: see :class:`SourcePeople`.
        live: source id -> live (see :class:`SourcePeople`); a source not in it counts as live.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        cfg: PeopleConfig,
        snapshot_dir: str | Path | None = None,
        margin: float = 0.0,
        live: Mapping[str, bool] | None = None,
    ) -> None:
        self.margin = margin
        self.live = dict(live or {})
        self.class_names = tuple(class_names)
        self.cfg = cfg
        self.snapshot_dir = snapshot_dir
        self._sources: dict[str, SourcePeople] = {}
        self._lock = threading.Lock()

    def source(self, source_id: str) -> SourcePeople:
        with self._lock:
            sp = self._sources.get(source_id)
            if sp is None:
                sp = self._sources[source_id] = SourcePeople(
                    source_id, self.class_names, self.cfg, self.snapshot_dir, self.margin,
                    self.live.get(source_id, True),
                )
            return sp

    def snapshot(self, source_id: str) -> bytes | None:
        """The whole state of one source (tracker, votes, schedule), pickled; None before its first frame.

        The ray engine takes one after each frame and restores it in a restarted camera actor, so the
        source's people continue exactly where the last delivered frame left them.
        """
        with self._lock:
            sp = self._sources.get(source_id)
        return None if sp is None else pickle.dumps(sp, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, source_id: str, state: bytes) -> None:
        """Continue ``source_id`` from a :meth:`snapshot` (replaces its current state)."""
        sp = restore_source(state)
        with self._lock:
            self._sources[source_id] = sp

    def finish_source(self, source_id: str) -> list[dict]:
        """``left`` events of a source that ended (called once its last frame was processed)."""
        with self._lock:
            sp = self._sources.pop(source_id, None)
        return sp.finish() if sp is not None else []

    def finish_all(self) -> list[dict]:
        """``left`` events for every source still open (after the worker stopped)."""
        with self._lock:
            sps, self._sources = list(self._sources.values()), {}
        return [ev for sp in sps for ev in sp.finish()]


def restore_source(state: bytes) -> SourcePeople:
    """A :class:`SourcePeople` from :meth:`PeopleStage.snapshot` bytes (made by this program: trusted)."""
    sp = pickle.loads(state)  # noqa: S301 - our own snapshot, passed between our own processes
    if not isinstance(sp, SourcePeople):
        raise TypeError(f"not a SourcePeople snapshot: {type(sp).__name__}")
    return sp
