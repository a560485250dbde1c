"""Event clips: a short annotated video around each no-mask moment, with pre- and post-roll.

Triggers (``ClipOptions.trigger``): a tracked person decided ``without_mask`` (``person`` events,
``Sink.person``), or a run of ``min_frames`` consecutive no-mask frames (``nomask_run``); ``auto``
uses runs until the first person event arrives, then persons only. Each source keeps a ring buffer
of its last ``pre_roll_s`` seconds of annotated frames (capped at ``max_buffer_mb``); a trigger
writes the buffer and every following frame until ``post_roll_s`` after the last no-mask frame
(or person decision), at most ``max_clip_s``.

Files: ``<dir>/<source>_<frame index>_<UTC>.mp4`` (H.264 fragmented MP4 by default). Each clip is
announced by a ``clip`` event (``event: start`` with its path, then ``event: end`` with its frame
count), sent to the events file and appended to ``<dir>/clips.jsonl``.
"""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from stream.errors import UserError, check
from stream.frames import SourceEvent
from stream.redact import redact_text
from stream.results import FrameResult
from stream.sinks.base import Sink, output_dir, safe_name, wall_time
from stream.sinks.encoder import CODECS, VideoEncoder
from stream.sinks.record import DEFAULT_FPS, WRITE_ERRORS, nomask_labels, utc_stamp
from stream.sinks.registry import SinkContext, register_sink
from stream.sinks.writer_thread import WriterThread

log = logging.getLogger(__name__)
Emit = Callable[[dict], None]
TRIGGERS = ("auto", "person", "nomask_run")


@dataclass(frozen=True)
class ClipOptions:
    """``sinks.clips``: short annotated clips around the moments that matter.

    Attributes:
        dir: clips directory (``<dir>/<source>_<frame>_<UTC>.mp4`` and ``<dir>/clips.jsonl``). None: off.
        pre_roll_s: seconds of video kept before the trigger (a ring buffer of annotated frames).
        post_roll_s: seconds kept after the last no-mask frame.
        min_frames: a no-mask frame run must last this many frames to trigger a clip.
        max_clip_s: a clip is cut after this long even if no-mask frames continue (the next one starts).
        trigger: person (a tracked person decided ``without_mask``), nomask_run (a run of no-mask
            frames) or auto (no-mask runs until the first person event arrives, then persons only).
        labels: classes that count as "no mask" (a detection's label or the frame's label).
        codec: h264 | mp4v | mjpg.
        max_buffer_mb: memory cap of each source's pre-roll buffer (large frames: shorter pre-roll).
        queue_frames: frames each source's clip writer may hold (live sources drop beyond it).
    """

    dir: str | None = None
    pre_roll_s: float = 3.0
    post_roll_s: float = 3.0
    min_frames: int = 5
    max_clip_s: float = 60.0
    trigger: str = "auto"
    labels: tuple[str, ...] = ("without_mask",)
    codec: str = "h264"
    max_buffer_mb: float = 256.0
    queue_frames: int = 64

    def __post_init__(self) -> None:
        check(0 <= self.pre_roll_s <= 60, "pre_roll_s", f"must be in [0, 60] seconds, got {self.pre_roll_s}")
        check(0 <= self.post_roll_s <= 60, "post_roll_s", f"must be in [0, 60] seconds, got {self.post_roll_s}")
        check(1 <= self.min_frames <= 10000, "min_frames", f"must be an int in [1, 10000], got {self.min_frames}")
        check(1 <= self.max_clip_s <= 3600, "max_clip_s", f"must be in [1, 3600] seconds, got {self.max_clip_s}")
        check(self.trigger in TRIGGERS, "trigger", f"must be one of {', '.join(TRIGGERS)}, got {self.trigger!r}")
        check(len(self.labels) > 0, "labels", "must name at least one class")
        check(self.codec in CODECS, "codec", f"must be one of {', '.join(CODECS)}, got {self.codec!r}")
        check(1 <= self.max_buffer_mb <= 65536, "max_buffer_mb", f"must be in [1, 65536], got {self.max_buffer_mb}")
        check(1 <= self.queue_frames <= 10000, "queue_frames", f"must be an int in [1, 10000], got {self.queue_frames}")


@dataclass
class _Clip:
    path: Path
    start_t: float  # wall time of the clip's first frame
    trigger_t: float
    last_hit_t: float
    last_t: float = 0.0  # the last frame sent
    frames_sent: int = 0
    person_ids: list = field(default_factory=list)


class _ClipWriter:
    """Encodes one source's clips; runs on that source's writer thread."""

    def __init__(self, codec: str, fps: float, errors: collections.deque) -> None:
        self.codec = codec
        self.fps = fps
        self.errors = errors
        self.enc: VideoEncoder | None = None
        self.start_t = 0.0
        self.path: Path | None = None
        self.failed = False
        self.frames: dict[str, int] = {}

    def handle(self, item: tuple) -> None:
        kind = item[0]
        try:
            if kind == "open":
                _, self.path, self.start_t = item
                self.enc, self.failed = None, False
                self.frames[str(self.path)] = 0
            elif kind in ("frame", "frames") and not self.failed and self.path is not None:
                for t, image in item[1] if kind == "frames" else [item[1:]]:
                    if self.enc is None:
                        self.path.parent.mkdir(parents=True, exist_ok=True)
                        size = (image.shape[1], image.shape[0])
                        self.enc = VideoEncoder(self.path, size, self.fps, self.codec, variable_rate=True)
                    self.enc.write(image, t=t - self.start_t)
                    self.frames[str(self.path)] += 1
            elif kind == "close" and self.enc is not None:
                enc, self.enc = self.enc, None
                enc.close()
        except WRITE_ERRORS as exc:
            self.failed = True
            if self.enc is not None:
                self.enc.abort()
                self.enc = None
            self.errors.append((str(self.path), getattr(exc, "strerror", None) or str(exc)))


class _SourceClips:
    def __init__(self, source_id: str, fps: float) -> None:
        self.source = redact_text(source_id)
        self.name = safe_name(source_id)
        self.fps = fps
        self.ring: collections.deque = collections.deque()  # (t, index, image)
        self.ring_bytes = 0
        self.run = 0
        self.run_start: tuple[float, int] | None = None
        self.clip: _Clip | None = None
        self.errors: collections.deque = collections.deque()
        self.writer: _ClipWriter | None = None
        self.thread: WriterThread | None = None
        self.dropped = 0


@register_sink("clips", ClipOptions)
class ClipSink(Sink):
    """Annotated clips of no-mask moments.

    Args:
        opts: the options (``opts.dir`` must be set).
        source_ids: every source id.
        fps: source id -> nominal frame rate (None: 25).
        live: source id -> True for live sources (clip frames dropped when the encoder is behind).
        emit: where ``clip`` events go (the events sink), or None.

    Raises:
        UserError: the directory cannot be created.
    """

    def __init__(
        self,
        opts: ClipOptions,
        source_ids: list[str],
        fps: dict[str, float | None] | None = None,
        live: dict[str, bool] | None = None,
        emit: Emit | None = None,
    ) -> None:
        if not opts.dir:
            raise UserError("sinks.clips.dir: not set")
        self.opts = opts
        self.dir = output_dir("clips", opts.dir)
        self.emit = emit
        self.labels = frozenset(opts.labels)
        self.max_buffer_bytes = int(opts.max_buffer_mb * 1e6)
        self.person_mode = opts.trigger == "person"
        fps = fps or {}
        live = live or {}
        self._src: dict[str, _SourceClips] = {}
        for k, sid in enumerate(source_ids):
            s = _SourceClips(sid, float(fps.get(sid) or DEFAULT_FPS))
            s.writer = _ClipWriter(opts.codec, s.fps, s.errors)
            s.thread = WriterThread(s.writer.handle, opts.queue_frames, block=not live.get(sid, False), name=f"clips-{k}")
            self._src[sid] = s
        self.clips: list[dict] = []  # every clip event, in order
        self._closed = False

    @classmethod
    def from_options(cls, opts: ClipOptions, ctx: SinkContext) -> "ClipSink | None":
        """The sink for ``sinks.clips`` (None when ``dir`` is unset); ``clip`` events also go to ``ctx.emit``."""
        if not opts.dir:
            return None
        return cls(opts, list(ctx.source_ids), dict(ctx.fps), dict(ctx.live), ctx.emit)

    # -------------------------------------------------------------- events out
    def _announce(self, obj: dict) -> None:
        self.clips.append(obj)
        if self.emit is not None:
            self.emit(obj)
        try:
            with open(self.dir / "clips.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(obj, separators=(",", ":")) + "\n")
        except OSError as exc:
            log.warning("clips %s: cannot append to clips.jsonl (%s)", self.dir, exc.strerror or exc)

    def _report_errors(self, s: _SourceClips) -> None:
        while s.errors:
            path, msg = s.errors.popleft()
            log.warning("clip %s: write failed (%s)", path, msg)
            self._announce({"type": "clip", "event": "error", "source": s.source, "path": path, "message": msg})

    # -------------------------------------------------------------- clip lifecycle
    def _start(self, s: _SourceClips, t: float, frame_index: int, trigger: str, person_id: object = None) -> None:
        assert s.thread is not None
        start_t = s.ring[0][0] if s.ring else t
        path = self.dir / f"{s.name}_{frame_index:07d}_{utc_stamp(t)}.mp4"
        s.clip = _Clip(path, start_t, t, t)
        s.thread.put(("open", path, start_t), force_block=True)
        if s.ring:  # the pre-roll as one item: a live source's queue cannot overflow on it
            s.thread.put(("frames", [(ft, im) for ft, _, im in s.ring]), force_block=True)
            s.clip.frames_sent += len(s.ring)
            s.clip.last_t = s.ring[-1][0]
        s.ring.clear()
        s.ring_bytes = 0
        ev = {
            "type": "clip",
            "event": "start",
            "source": s.source,
            "path": str(path),
            "trigger": trigger,
            "frame_index": int(frame_index),
            "time": round(t, 3),
            "pre_roll_s": round(t - start_t, 3),
        }
        if person_id is not None:
            ev["person_id"] = person_id
            s.clip.person_ids.append(person_id)
        self._announce(ev)

    def _end(self, s: _SourceClips) -> None:
        clip, s.clip = s.clip, None
        if clip is None:
            return
        assert s.thread is not None
        s.thread.put(("close",), force_block=True)
        self._announce(
            {
                "type": "clip",
                "event": "end",
                "source": s.source,
                "path": str(clip.path),
                "frames": clip.frames_sent,
                "time": round(clip.last_t, 3),
                "duration_s": round(clip.last_t - clip.start_t, 3),
            }
        )

    def _buffer(self, s: _SourceClips, t: float, index: int, image: np.ndarray) -> None:
        s.ring.append((t, index, image))
        s.ring_bytes += image.nbytes
        # pre-roll: before the run began (runs trigger), before now (person decisions trigger)
        since = s.run_start[0] if (s.run and s.run_start is not None and not self.person_mode) else t
        while s.ring and (s.ring[0][0] < since - self.opts.pre_roll_s or s.ring_bytes > self.max_buffer_bytes):
            s.ring_bytes -= s.ring.popleft()[2].nbytes

    # -------------------------------------------------------------- sink interface
    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        f = result.frame
        s = self._src.get(f.source_id)
        if s is None:
            raise KeyError(f"clip sink: unknown source {f.source_id!r}")
        self._report_errors(s)
        t = wall_time(f.capture_time)
        hit = bool(nomask_labels(result, self.labels))
        if hit:
            if s.run == 0 or s.run_start is None:
                s.run_start = (t, int(f.index))
            s.run += 1
        else:
            s.run = 0
        if s.clip is not None:
            assert s.thread is not None
            if hit and not self.person_mode:
                s.clip.last_hit_t = t
            if t > s.clip.last_hit_t + self.opts.post_roll_s or t - s.clip.start_t > self.opts.max_clip_s:
                self._end(s)
                self._buffer(s, t, int(f.index), annotated)
            else:
                if s.thread.put(("frame", t, annotated)):
                    s.clip.frames_sent += 1
                    s.clip.last_t = t
                else:
                    s.dropped += 1
                return
        else:
            self._buffer(s, t, int(f.index), annotated)
        if not self.person_mode and s.run >= self.opts.min_frames and s.clip is None:
            assert s.run_start is not None
            self._start(s, t, s.run_start[1], "nomask_run")

    @property
    def waited_s(self) -> float:
        """Seconds the pipeline thread waited for the clip writers (file sources: their queue was full)."""
        return sum(s.thread.waited_s for s in self._src.values() if s.thread is not None)

    def person(self, event: dict) -> None:
        """A person event (issue 13): a ``decided`` ``without_mask`` person triggers a clip."""
        if self.opts.trigger == "auto" and not self.person_mode:
            self.person_mode = True  # persons are tracked now: they, not frame runs, trigger clips
            log.info("clips: person events arrived; clips now follow person decisions")
        if not self.person_mode:
            return
        if event.get("event") != "decided" or event.get("label") not in self.labels:
            return
        s = self._src.get(str(event.get("source_id", ""))) or next(
            (x for x in self._src.values() if x.source == event.get("source")), None
        )
        if s is None:
            return
        t = float(event.get("time") or (s.ring[-1][0] if s.ring else 0.0))
        pid = event.get("person_id")
        if s.clip is not None:
            s.clip.last_hit_t = max(s.clip.last_hit_t, t)
            s.clip.person_ids.append(pid)
            self._announce(
                {"type": "clip", "event": "person", "source": s.source, "path": str(s.clip.path),
                 "person_id": pid, "frame_index": event.get("frame_index"), "time": round(t, 3)}
            )
        else:
            self._start(s, t, int(event.get("frame_index") or 0), "person", pid)

    def event(self, ev: SourceEvent) -> None:
        s = self._src.get(ev.source_id)
        if s is not None and ev.state.value in ("disconnected", "reconnecting", "end_of_stream", "failed"):
            self._end(s)  # an outage ends the clip; the buffer before it is stale
            s.ring.clear()
            s.ring_bytes = 0
            s.run = 0

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for s in self._src.values():
            try:
                self._end(s)
            except Exception as exc:  # noqa: BLE001 - close every source, then report
                errors.append(exc)
            assert s.thread is not None
            try:
                s.thread.close()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            self._report_errors(s)
            if s.dropped:
                log.warning("clips %s: %d frames dropped (encoder behind a live source)", s.source, s.dropped)
        if errors:
            raise errors[0]
