"""CaptureSource: one capture thread per source, behind the FrameSource contract.

The thread opens a reader, pulls frames, validates/converts them, and hands frames and
state events to the consumer through an :class:`ItemBuffer` (drop-oldest for live sources,
blocking for files). Network (and webcam) sources that fail reconnect with capped
exponential backoff; while down, no frame is produced, only events.

Event order a consumer sees::

    CONNECTING, CONNECTED, frames..., END_OF_STREAM                         (file / folder)
    CONNECTING, CONNECTED, frames..., DISCONNECTED, RECONNECTING(1), ...,
        CONNECTED, frames...                                                (network drop)
    CONNECTING, RECONNECTING(1), RECONNECTING(2), ..., FAILED               (unreachable, max_attempts)
"""
from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable

from stream.backoff import Backoff
from stream.errors import UserError
from stream.frames import Frame, Item, SourceEvent, SourceState, SourceStats
from stream.redact import redact_text
from stream.sources.buffer import ItemBuffer
from stream.sources.normalize import to_bgr
from stream.sources.options import SourceOptions
from stream.sources.readers import Reader, ReaderError, ReaderFactory

log = logging.getLogger("stream.sources")

_LEVELS = {
    SourceState.CONNECTING: logging.INFO,
    SourceState.CONNECTED: logging.INFO,
    SourceState.END_OF_STREAM: logging.INFO,
    SourceState.DISCONNECTED: logging.WARNING,
    SourceState.RECONNECTING: logging.WARNING,
    SourceState.FAILED: logging.ERROR,
}


def _count(counts: dict[str, int], key: str, store: Callable[[dict[str, int]], None]) -> None:
    """Increment ``counts[key]`` copy-on-write: a HUD iterating the old dict in another thread
    never sees it change size under it."""
    store({**counts, key: counts.get(key, 0) + 1})


class _Outcome(enum.Enum):
    END = "end"  # a file/folder ran out
    LOST = "lost"  # a live stream stopped delivering
    STOPPED = "stopped"  # stop() was called


class CaptureSource:
    """A frame source with its own capture thread (implements ``stream.frames.FrameSource``).

    Args:
        reader_factory: makes a fresh, unopened reader for each (re)connect.
        source_id: id stamped on frames/events (redacted again here, to be safe).
        description: how messages name the source (redacted again here).
        live: drop-oldest buffer of ``options.live_buffer`` frames (True) or a blocking
            queue of ``options.file_queue`` frames (False).
        reconnect: reopen with backoff when opening or reading fails (network, webcam).
        open_in_start: open the first reader in ``start()`` itself, so a missing file or webcam
            raises ``UserError`` there (False: the thread connects, reporting through events).
        options: buffering, pacing and reconnect options.
        stills: the frames are unrelated still images (an image folder), not a sequence: people
            tracking leaves them alone and each photo is judged by itself.
    """

    def __init__(
        self,
        reader_factory: ReaderFactory,
        *,
        source_id: str,
        description: str,
        live: bool,
        reconnect: bool,
        open_in_start: bool,
        options: SourceOptions | None = None,
        stills: bool = False,
    ) -> None:
        self.options = options or SourceOptions()
        self.stills = bool(stills)
        self.source_id = redact_text(source_id)
        self.description = redact_text(description)
        self.live = live
        self.reconnect = reconnect
        self.open_in_start = open_in_start
        self.stats = SourceStats()
        self.state = SourceState.CONNECTING
        self.error: BaseException | None = None  # an unexpected capture-thread error (also a FAILED event)
        self.fps: float | None = None  # nominal frame rate of the open stream/file when known (for writers)
        self._factory = reader_factory
        self._buffer = ItemBuffer(self.options.live_buffer if live else self.options.file_queue, live)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._index = 0
        self._ever_connected = False

    # ----------------------------------------------------------------- consumer side
    def start(self) -> None:
        """Start capturing. Raises UserError if a file/folder/webcam cannot be opened."""
        if self._started:
            raise RuntimeError(f"source {self.source_id} already started")
        self._started = True
        self._emit(SourceState.CONNECTING, f"opening {self.description}")
        reader: Reader | None = None
        if self.open_in_start:
            reader = self._factory()
            try:
                reader.open()
            except ReaderError as exc:
                reader.close()
                self._emit(SourceState.FAILED, str(exc))
                self._buffer.close()
                raise UserError(redact_text(str(exc))) from None
            self.fps = reader.fps
        self._thread = threading.Thread(
            target=self._run, args=(reader,), name=f"capture:{self.source_id}", daemon=True
        )
        self._thread.start()

    def get(self, timeout: float) -> Item | None:
        """Next Frame or SourceEvent in order, or None after ``timeout`` seconds.

        Once the source has ended (END_OF_STREAM or FAILED delivered) or was stopped, returns
        None at once.
        """
        if not self._started and not self._stop.is_set():
            raise RuntimeError(f"source {self.source_id}: call start() before get()")
        return self._buffer.get(timeout)

    def request_stop(self) -> None:
        """Ask the capture thread to stop without waiting (call on every source, then ``stop``)."""
        self._stop.set()
        self._buffer.cancel()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the capture thread and wait for it up to ``timeout`` s (idempotent, never hangs).

        A thread stuck inside a blocking native call past ``timeout`` (an open waits up to
        ``open_timeout``, a read up to ``read_timeout``) is left to finish on its own: it is a
        daemon, delivers nothing more and releases its capture when the call returns.
        """
        self.request_stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning(
                    "capture thread of %s still blocked in a read after %.1f s; leaving it to finish",
                    self.source_id, timeout,
                )

    @property
    def running(self) -> bool:
        """True while the capture thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> CaptureSource:
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"CaptureSource({self.source_id!r}, state={self.state.value}, live={self.live})"

    # ----------------------------------------------------------------- capture thread
    def _emit(self, state: SourceState, message: str = "", attempt: int = 0) -> None:
        message = redact_text(message)
        self.state = state
        self._buffer.put_event(SourceEvent(self.source_id, state, time.monotonic(), message, attempt))
        log.log(_LEVELS[state], "source %s: %s%s", self.source_id, state.value, f": {message}" if message else "")

    def _run(self, reader: Reader | None) -> None:
        try:
            self._loop(reader)
        except Exception as exc:  # never let the consumer wait on a dead thread silently
            self.error = exc
            text = redact_text(f"{type(exc).__name__}: {exc}")
            log.error("source %s: capture thread failed: %s", self.source_id, text)
            self._emit(SourceState.FAILED, f"capture error: {text}")
        finally:
            self._buffer.close()

    def _loop(self, reader: Reader | None) -> None:
        backoff = self.options.backoff()
        attempt = 0
        last_error = ""
        while not self._stop.is_set():
            if reader is None:
                reader = self._factory()
                try:
                    reader.open()
                except ReaderError as exc:
                    reader.close()
                    reader = None
                    last_error = str(exc)
                    if not self.reconnect:
                        self._emit(SourceState.FAILED, last_error)
                        return
                    attempt += 1
                    if not self._wait_to_retry(backoff, attempt, last_error):
                        return
                    continue
                self.fps = reader.fps
            try:
                if self._ever_connected:
                    self.stats.reconnects += 1
                msg = f"connected to {self.description}"
                if attempt:
                    msg += f" after {attempt} attempt{'s' if attempt > 1 else ''}"
                self._ever_connected = True
                attempt = 0
                self._emit(SourceState.CONNECTED, msg)
                outcome = self._pump(reader)
            finally:
                reader.close()
                reader = None
            if outcome is _Outcome.STOPPED:
                return
            if outcome is _Outcome.END:
                self._emit(SourceState.END_OF_STREAM, f"end of {self.description}")
                return
            last_error = "stream lost (read failed or timed out)"
            self._emit(SourceState.DISCONNECTED, f"{self.description}: {last_error}")
            if not self.reconnect:
                self._emit(SourceState.FAILED, f"{self.description}: {last_error}; reconnect disabled")
                return
            attempt += 1
            if not self._wait_to_retry(backoff, attempt, last_error):
                return

    def _wait_to_retry(self, backoff: Backoff, attempt: int, last_error: str) -> bool:
        """Emit RECONNECTING and sleep the backoff delay; False to give up (FAILED) or on stop."""
        limit = self.options.max_attempts
        if limit and attempt > limit:
            plural = "s" if limit > 1 else ""
            self._emit(
                SourceState.FAILED,
                f"gave up on {self.description} after {limit} reconnect attempt{plural}: {last_error}",
            )
            return False
        delay = backoff.delay(attempt)
        self._emit(SourceState.RECONNECTING, f"{last_error}; attempt {attempt} in {delay:.2f} s", attempt)
        return not self._stop.wait(delay)

    def _pump(self, reader: Reader) -> _Outcome:
        """Move frames from ``reader`` to the buffer until it ends, fails or we stop."""
        period = self._pacing_period(reader)
        next_due: float | None = None
        delivered_this_pass = 0
        while not self._stop.is_set():
            if period:  # pace before reading, so capture_time is when the frame is released
                now = time.monotonic()
                next_due = now if next_due is None else next_due + period
                if next_due < now - period:  # fell behind (slow consumer): don't burst to catch up
                    next_due = now
                if next_due > now and self._stop.wait(next_due - now):
                    return _Outcome.STOPPED
            result = reader.read()
            capture_time = time.monotonic()
            if self._stop.is_set():
                return _Outcome.STOPPED
            if result is None:
                if self.live:
                    return _Outcome.LOST
                if not self.options.loop:
                    return _Outcome.END
                if delivered_this_pass == 0:
                    log.warning("source %s: a full pass gave no usable frame; not looping", self.source_id)
                    return _Outcome.END
                reader.close()
                try:
                    reader.open()  # rewind: a fresh open is the one seek every container supports
                except ReaderError as exc:
                    self._emit(SourceState.FAILED, f"cannot reopen {self.description} to loop: {exc}")
                    return _Outcome.STOPPED
                delivered_this_pass = 0
                continue
            index = self._index
            self._index += 1
            self.stats.frames_read += 1
            norm = to_bgr(result.image) if result.skip_reason is None else None
            reason = result.skip_reason or (norm.skip_reason if norm else None)
            if reason is not None:
                self.stats.frames_skipped += 1
                _count(self.stats.skip_reasons, reason, lambda d: setattr(self.stats, "skip_reasons", d))
                if self.stats.frames_skipped == 1:
                    log.warning("source %s: skipping unusable frame %d (%s)", self.source_id, index, reason)
                continue
            assert norm is not None and norm.image is not None
            if norm.converted:
                _count(self.stats.conversions, norm.converted, lambda d: setattr(self.stats, "conversions", d))
            frame = Frame(self.source_id, index, norm.image, capture_time, result.pos_ms, result.name)
            if not self._buffer.put_frame(frame):
                return _Outcome.STOPPED
            delivered_this_pass += 1
            self.stats.frames_dropped = self._buffer.dropped_frames
        return _Outcome.STOPPED

    def _pacing_period(self, reader: Reader) -> float:
        if self.live:
            return 0.0
        if self.options.fps:
            return 1.0 / self.options.fps
        if self.options.realtime and reader.fps:
            return 1.0 / reader.fps
        return 0.0
