"""Continuous recording: every source into short annotated segments, indexed, with retention.

``<dir>/<source>/<source>_<UTC start>.mp4`` (source = the redacted, file-safe id), each segment a
fragmented MP4 that starts with a keyframe and plays on its own, even if the run was killed while
writing it. A new segment starts every ``segment_s`` seconds and after each reconnect (so an outage
is a gap between files, never frozen video). Timestamps are the frames' capture times (variable
frame rate: dropped frames and gaps keep their real duration).

``<dir>/index.sqlite`` (``stream.sinks.segment_index``) lists the segments and the events inside
each (no-mask runs, source state changes, person decisions). Retention by age and total size
runs after each segment and at start.

Write errors (disk full, directory gone or not writable) never stop detection: the segment is
cut, frames are skipped (counted) and a ``recording`` event with ``state: error`` is emitted;
every ``retry_s`` a new segment is tried, and once its first keyframe interval is on disk (or the
segment, if shorter, was closed complete) a ``recording`` event with ``state: recording`` says it resumed.

Encoding runs on a writer thread per source: live sources drop frames the encoder cannot take
(counted), file sources wait for it.
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

import av
import numpy as np

from stream.errors import UserError, check
from stream.frames import SourceEvent, SourceState
from stream.redact import redact_text
from stream.results import FrameResult
from stream.sinks.base import Sink, output_dir, safe_name, wall_time
from stream.sinks.encoder import CODECS, VideoEncoder
from stream.sinks.registry import SinkContext, register_sink
from stream.sinks.segment_index import Segment, SegmentIndex, count_packets
from stream.sinks.writer_thread import WriterThread

log = logging.getLogger(__name__)

Emit = Callable[[dict], None]
CUT_STATES = (SourceState.DISCONNECTED, SourceState.RECONNECTING, SourceState.END_OF_STREAM, SourceState.FAILED)
WRITE_ERRORS = (OSError, sqlite3.Error, av.error.FFmpegError)
DEFAULT_FPS = 25.0
GOP_S = 1.0
NOMASK_LABELS = ("without_mask",)


@dataclass(frozen=True)
class RecordOptions:
    """``sinks.record``: continuous recording of every source into short segments.

    Attributes:
        dir: recordings directory (``<dir>/<source>/<source>_<UTC start>.mp4`` and
            ``<dir>/index.sqlite``). None: off.
        segment_s: length of one segment, seconds (a new segment also starts after a reconnect).
        max_age_h: delete segments older than this many hours (0: keep by age forever).
        max_size_mb: delete the oldest segments while the recordings exceed this total (0: no cap).
        codec: h264 | mp4v | mjpg.
        retry_s: after a write error (disk full, not writable) try again this often.
        queue_frames: frames each source's writer may hold; beyond it new frames are dropped and
            counted (recording never slows detection).
    """

    dir: str | None = None
    segment_s: float = 60.0
    max_age_h: float = 168.0
    max_size_mb: float = 10000.0
    codec: str = "h264"
    retry_s: float = 5.0
    queue_frames: int = 32

    def __post_init__(self) -> None:
        check(0.5 <= self.segment_s <= 86400, "segment_s", f"must be in [0.5, 86400] seconds, got {self.segment_s}")
        check(self.max_age_h >= 0, "max_age_h", f"must be >= 0 (0: no age limit), got {self.max_age_h}")
        check(self.max_size_mb >= 0, "max_size_mb", f"must be >= 0 (0: no size cap), got {self.max_size_mb}")
        check(self.codec in CODECS, "codec", f"must be one of {', '.join(CODECS)}, got {self.codec!r}")
        check(0.1 <= self.retry_s <= 3600, "retry_s", f"must be in [0.1, 3600] seconds, got {self.retry_s}")
        check(1 <= self.queue_frames <= 10000, "queue_frames", f"must be an int in [1, 10000], got {self.queue_frames}")


def nomask_labels(result: FrameResult, labels: tuple[str, ...] | frozenset[str] = NOMASK_LABELS) -> list[str]:
    """Labels of ``result`` (detections, else the frame label) that count as no mask."""
    hits = [d.label for d in result.detections if d.label in labels]
    if not hits and result.label in labels:
        hits = [result.label]
    return hits


def utc_stamp(t: float) -> str:
    """Unix time as ``YYYYmmddTHHMMSS.mmmZ`` (sorts by time, safe in file names)."""
    d = datetime.fromtimestamp(t, tz=timezone.utc)
    return d.strftime("%Y%m%dT%H%M%S") + f".{d.microsecond // 1000:03d}Z"


@dataclass
class RecordStats:
    """Per-source counters (read after ``close``)."""

    segments: int = 0
    frames: int = 0
    dropped: int = 0  # the encoder was behind a live source
    lost: int = 0  # not recorded because of a write error
    errors: int = 0


class _SourceRecorder:
    """One source's segments; ``handle`` runs on the source's writer thread."""

    def __init__(self, sink: "RecordSink", source_id: str, fps: float) -> None:
        self.sink = sink
        self.source = redact_text(source_id)
        self.name = safe_name(source_id)
        self.fps = fps
        self.opts = sink.opts
        self.stats = RecordStats()
        self.seg: Segment | None = None
        self.enc: VideoEncoder | None = None
        self.retry_at: float | None = None  # set while in the error state
        self.confirm_after: int | None = None  # frames until a resumed segment counts as recording
        self.state = "idle"
        self.unsaved: list[Segment] = []  # closed segments the index could not store yet
        self._events: collections.deque = collections.deque()  # filled by the pipeline thread

    # -------------------------------------------------------------- pipeline thread side
    def add_event(self, ev: dict) -> None:
        self._events.append(ev)

    # -------------------------------------------------------------- writer thread side
    def handle(self, item: tuple) -> None:
        kind = item[0]
        if kind == "frame" and self.retry_at is not None and time.monotonic() < self.retry_at:
            self.stats.lost += 1  # failing: not even the index is touched until the next retry
            self._take_events(until=item[1])  # no segment to hold them (they are in the events file)
            return
        try:
            self._flush_unsaved()
            if kind == "frame":
                self._frame(*item[1:])
            elif kind == "cut":
                self._take_events(until=item[1])
                self._close_segment()
            elif kind == "close":
                self._take_events()
                self._close_segment()
        except WRITE_ERRORS as exc:
            self._fail(exc)

    def _take_events(self, until: float | None = None, strict: bool = False) -> None:
        """Move queued events (time order) into the open segment: all, or those up to ``until``."""
        while self._events:
            t = self._events[0]["time"]
            if until is not None and (t > until or (strict and t >= until)):
                return  # a later frame's event: it belongs to the segment that frame goes into
            ev = self._events.popleft()
            if self.seg is not None:
                self.seg.events.append(ev)
            # no segment open (source down, or recording failed): the event is in the events file only

    def _frame(self, t: float, image: np.ndarray) -> None:
        if self.seg is not None and t - self.seg.start >= self.opts.segment_s:
            self._take_events(until=t, strict=True)
            self._close_segment()
        if self.seg is None:
            self._open_segment(t, image)
        self._take_events(until=t)
        assert self.seg is not None and self.enc is not None
        self.enc.write(image, t=t - self.seg.start)
        self.seg.frames += 1
        self.seg.end = t
        self.stats.frames += 1
        if self.confirm_after is not None and self.seg.frames > self.confirm_after:
            self._resumed(self.seg)  # the first fragment reached the disk: recording again

    def _open_segment(self, t: float, image: np.ndarray) -> None:
        root = self.sink.root
        folder = root / self.name
        folder.mkdir(parents=True, exist_ok=True)
        rel = f"{self.name}/{self.name}_{utc_stamp(t)}.mp4"
        k = 1
        while (root / rel).exists():
            rel = f"{self.name}/{self.name}_{utc_stamp(t)}-{k}.mp4"
            k += 1
        seg = Segment(self.source, rel, t)
        self.enc = VideoEncoder(
            root / rel, (image.shape[1], image.shape[0]), self.fps, self.opts.codec, gop_s=GOP_S, variable_rate=True
        )
        self.seg = seg
        self.sink.index.add(seg)
        self.stats.segments += 1
        if self.retry_at is not None:  # recovering: confirmed once the first keyframe interval is written
            self.confirm_after = max(1, round(self.fps * GOP_S)) + 1
        elif self.state != "recording":
            self._set_state("recording", f"segment {rel}")

    def _close_segment(self, status: str = "complete") -> None:
        """Flush and close the open segment and index it (``truncated`` when the flush fails)."""
        seg, enc = self.seg, self.enc
        self.seg, self.enc = None, None
        if seg is None:
            return
        if enc is not None:
            try:
                enc.close()
            except WRITE_ERRORS:
                enc.abort()
                self._store(seg, "truncated")  # the final flush failed: index what the file holds
                raise
        self._store(seg, status)
        if self.retry_at is not None and status == "complete" and seg.frames > 0:
            # a segment shorter than one keyframe interval (a source slower than its nominal fps, or
            # the run's end) never reached confirm_after, but closing it put all of it on disk
            self._resumed(seg)

    def _resumed(self, seg: Segment) -> None:
        self.confirm_after = None
        self.retry_at = None
        self._set_state("recording", f"resumed: {seg.path}")

    def _store(self, seg: Segment, status: str) -> None:
        path = self.sink.root / seg.path
        if status != "complete":
            seg.frames = count_packets(path) if path.is_file() else 0  # what the file really holds
        seg.status = status
        seg.bytes = path.stat().st_size if path.is_file() else 0
        if seg.frames == 0:  # nothing playable: no file, no row
            path.unlink(missing_ok=True)
            if seg.id is not None:
                try:
                    self.sink.index.remove(seg.id)
                except sqlite3.Error:
                    self.unsaved.append(seg)
            return
        try:
            self.sink.index.finish(seg)
        except sqlite3.Error:
            self.unsaved.append(seg)
            raise
        self.sink.retention()

    def _flush_unsaved(self) -> None:
        while self.unsaved:
            seg = self.unsaved[0]
            if seg.frames == 0:
                if seg.id is not None:
                    self.sink.index.remove(seg.id)
            else:
                self.sink.index.finish(seg)
            self.unsaved.pop(0)

    def _fail(self, exc: BaseException) -> None:
        self.stats.errors += 1
        if self.seg is not None:
            seg, enc = self.seg, self.enc
            self.seg, self.enc = None, None
            if enc is not None:
                enc.abort()
            try:
                self._store(seg, "truncated")
            except WRITE_ERRORS:
                pass  # kept in self.unsaved when the index failed
        self.retry_at = time.monotonic() + self.opts.retry_s
        self.confirm_after = None
        msg = write_error_message(exc)
        self._set_state("error", f"{msg} ({self.sink.root}); retrying every {self.opts.retry_s:g} s")

    def _set_state(self, state: str, message: str) -> None:
        if state == self.state and state != "error":
            return
        if state == "error" and self.state == "error":
            return  # still failing: one event per outage
        self.state = state
        self.sink.report(self.source, state, message)

    def finish(self) -> None:
        """Close the open segment (main thread, after the writer thread ended)."""
        try:
            self._flush_unsaved()
            self._take_events()
            self._close_segment()
        except WRITE_ERRORS as exc:
            self._fail(exc)


def write_error_message(exc: BaseException) -> str:
    """One line for a failed write: the OS's words; a full disk reads the same whether the encoder or the index hit it."""
    if isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return f"{os.strerror(errno.ENOSPC)} (index: {exc})"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


@register_sink("record", RecordOptions)
class RecordSink(Sink):
    """Continuous segmented recording of every source.

    Args:
        opts: the options (``opts.dir`` must be set).
        source_ids: every source id.
        fps: source id -> nominal frame rate (None: 25; timestamps are capture times anyway).
        live: source id -> True for live sources (frames dropped when the encoder is behind).
        emit: where ``recording`` state events go (the events sink), or None.

    Raises:
        UserError: the directory cannot be created or written, or the index cannot be opened.
    """

    def __init__(
        self,
        opts: RecordOptions,
        source_ids: list[str],
        fps: dict[str, float | None] | None = None,
        live: dict[str, bool] | None = None,
        emit: Emit | None = None,
    ) -> None:
        if not opts.dir:
            raise UserError("sinks.record.dir: not set")
        self.opts = opts
        self.root = output_dir("record", opts.dir)
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UserError(f"record {self.root}: the directory is not writable")
        try:
            self.index = SegmentIndex(self.root)
            fixed = self.index.recover()
        except (sqlite3.Error, OSError) as exc:
            raise UserError(f"record {self.root}: cannot open index.sqlite ({exc})") from None
        if fixed:
            log.info("recordings: %d segment(s) of an interrupted run re-indexed", fixed)
        self.emit = emit
        self._states: collections.deque = collections.deque()
        self._retention_lock = threading.Lock()
        fps = fps or {}
        live = live or {}
        self._rec = {sid: _SourceRecorder(self, sid, float(fps.get(sid) or DEFAULT_FPS)) for sid in source_ids}
        self._threads = {
            sid: WriterThread(r.handle, opts.queue_frames, block=not live.get(sid, False), name=f"record-{k}")
            for k, (sid, r) in enumerate(self._rec.items())
        }
        self._nomask: dict[str, bool] = {}
        self._closed = False
        self.retention()

    @classmethod
    def from_options(cls, opts: RecordOptions, ctx: SinkContext) -> "RecordSink | None":
        """The sink for ``sinks.record`` (None when ``dir`` is unset); ``recording`` events go to ``ctx.emit``."""
        if not opts.dir:
            return None
        return cls(opts, list(ctx.source_ids), dict(ctx.fps), dict(ctx.live), ctx.emit)

    # -------------------------------------------------------------- called from writer threads
    def report(self, source: str, state: str, message: str) -> None:
        """Queue a recording state change (emitted on the pipeline thread)."""
        self._states.append(
            {"type": "recording", "source": source, "state": state, "time": round(time.time(), 3), "message": message}
        )

    def retention(self) -> list[str]:
        """Apply the age and size limits now; returns the deleted paths."""
        with self._retention_lock:
            open_bytes = 0
            for r in getattr(self, "_rec", {}).values():
                seg = r.seg
                if seg is not None:
                    try:
                        open_bytes += (self.root / seg.path).stat().st_size
                    except OSError:
                        pass
            return self.index.enforce(
                self.opts.max_age_h * 3600.0, int(self.opts.max_size_mb * 1e6), open_bytes=open_bytes
            )

    # -------------------------------------------------------------- pipeline thread
    def _drain_states(self) -> None:
        while self._states:
            ev = self._states.popleft()
            (log.warning if ev["state"] == "error" else log.info)(
                "recording %s: %s (%s)", ev["source"], ev["state"], ev["message"]
            )
            if self.emit is not None:
                self.emit(ev)

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        self._drain_states()
        f = result.frame
        rec = self._rec.get(f.source_id)
        if rec is None:
            raise KeyError(f"record sink: unknown source {f.source_id!r}")
        t = wall_time(f.capture_time)
        hits = nomask_labels(result)
        if hits and not self._nomask.get(f.source_id):
            rec.add_event({"type": "nomask", "time": round(t, 3), "frame_index": int(f.index), "label": hits[0]})
        self._nomask[f.source_id] = bool(hits)
        if not self._threads[f.source_id].put(("frame", t, annotated)):
            rec.stats.dropped += 1

    def event(self, ev: SourceEvent) -> None:
        self._drain_states()
        rec = self._rec.get(ev.source_id)
        if rec is None:
            return
        t = round(wall_time(ev.time), 3)
        rec.add_event(
            {
                "type": "state",
                "time": t,
                "state": ev.state.value,
                "message": redact_text(ev.message),
            }
        )
        if ev.state in CUT_STATES:
            self._nomask[ev.source_id] = False
            self._threads[ev.source_id].put(("cut", t), force_block=True)

    def person(self, event: dict) -> None:
        rec = self._rec.get(str(event.get("source_id", "")))
        if rec is None:  # person events carry the redacted source; match it
            rec = next((r for r in self._rec.values() if r.source == event.get("source")), None)
        if rec is not None:
            rec.add_event({**event, "type": "person", "time": event.get("time") or round(time.time(), 3)})

    @property
    def waited_s(self) -> float:
        """Seconds the pipeline thread waited for the writers (file sources: their queue was full)."""
        return sum(th.waited_s for th in self._threads.values())

    @property
    def stats(self) -> dict[str, RecordStats]:
        """Per-source counters (``dropped`` includes frames the writer queue refused)."""
        return {sid: r.stats for sid, r in self._rec.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            for sid, th in self._threads.items():
                th.close()
                self._rec[sid].finish()
            self._drain_states()
            for sid, r in self._rec.items():
                s = r.stats
                log.info(
                    "recording %s: %d segment(s), %d frames, %d dropped, %d lost to errors",
                    redact_text(sid), s.segments, s.frames, s.dropped, s.lost,
                )
        finally:
            self.index.close()


__all__ = ["RecordOptions", "RecordSink", "RecordStats", "nomask_labels", "utc_stamp"]
