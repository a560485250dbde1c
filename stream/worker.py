"""The batching thread: frames from every source -> one call per batch -> results, in order.

:class:`BatchWorker` collects frames across sources until ``batch_size`` frames or ``batch_timeout``
after the first one (DeepStream's batched-push-timeout), runs a processor on them (the local engine's
:class:`stream.processor.Processor`) and passes results (and source events, in order) to the output
queue. Any exception ends it and is handed to the consumer with a DONE marker; it never blocks on a
full queue once ``stop`` is set.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Sequence

from stream.frames import Frame, FrameSource, SourceEvent, SourceState
from stream.results import Done, Item

log = logging.getLogger(__name__)

TERMINAL_STATES = (SourceState.END_OF_STREAM, SourceState.FAILED)


def put_until_stopped(out: queue.Queue, item: Any, stop: threading.Event, poll_s: float = 0.05) -> bool:
    """Put ``item`` on the bounded queue ``out``, waiting while it is full, until ``stop`` is set.

    Returns True once put, False when ``stop`` was set first (the consumer is gone: never block then).
    """
    while not stop.is_set():
        try:
            out.put(item, timeout=poll_s)
            return True
        except queue.Full:
            continue
    return False


def put_done(out: queue.Queue, done: Any, stop: threading.Event) -> None:
    """Put the final ``done`` marker on ``out``; once ``stop`` is set, make room instead of blocking.

    The consumer may already be gone: after stop it only drains to find the marker, so an item is dropped.
    """
    while True:
        try:
            out.put(done, timeout=0.05)
            return
        except queue.Full:
            if stop.is_set():
                try:
                    out.get_nowait()
                except queue.Empty:
                    pass


class BatchWorker(threading.Thread):
    """Collects frames from all sources into batches and runs the processor on each.

    Args:
        sources: started frame sources (polled round-robin).
        process: ``Processor.process`` (or any callable list[Frame] -> list of results).
        out: bounded queue the consumer reads; receives results, ``SkippedFrame``, source
            events in source order, and finally one :class:`Done`.
        stop: set by the consumer to end the worker; it then never blocks.
        batch_size: frames per batch.
        batch_timeout_s: push a partial batch this long after its first frame.
        max_frames: stop after this many frames in total (None: until every source ended).
    """

    def __init__(
        self,
        sources: Sequence[FrameSource],
        process: Callable[[list[Frame]], list],
        out: queue.Queue,
        stop: threading.Event,
        batch_size: int = 4,
        batch_timeout_s: float = 0.01,
        max_frames: int | None = None,
        poll_s: float = 0.05,
    ) -> None:
        super().__init__(name="maskstream-worker", daemon=True)
        self.sources = list(sources)
        self.process = process
        self.out = out
        self.stop_event = stop
        self.batch_size = batch_size
        self.batch_timeout_s = batch_timeout_s
        self.max_frames = max_frames
        self.poll_s = poll_s
        self.frames_in = 0
        self.batches = 0
        self.error: BaseException | None = None

    def _put(self, item: Item) -> bool:
        return put_until_stopped(self.out, item, self.stop_event)

    def _flush(self, pending: list) -> None:
        frames = [x for x in pending if isinstance(x, Frame)]
        results = iter(self.process(frames) if frames else [])
        if frames:
            self.batches += 1
        for x in pending:
            if not self._put(next(results) if isinstance(x, Frame) else x):
                return
        pending.clear()

    def run(self) -> None:  # noqa: D401 - thread body
        active = list(self.sources)
        pending: list = []
        n_frames = 0
        deadline: float | None = None
        start = 0
        try:
            while not self.stop_event.is_set():
                limit = self.max_frames is not None and self.frames_in >= self.max_frames
                if not active or limit:
                    break
                now = time.monotonic()
                wait = self.poll_s if deadline is None else max(0.0, deadline - now)
                per = wait / len(active)
                got = False
                order = active[start:] + active[:start]
                start = (start + 1) % max(1, len(active))
                for src in order:
                    item = src.get(timeout=per)
                    if item is None:
                        continue
                    got = True
                    if isinstance(item, SourceEvent):
                        pending.append(item)
                        if item.state in TERMINAL_STATES and src in active:
                            active.remove(src)
                    else:
                        pending.append(item)
                        n_frames += 1
                        self.frames_in += 1
                        if deadline is None:
                            deadline = time.monotonic() + self.batch_timeout_s
                    if n_frames >= self.batch_size or (
                        self.max_frames is not None and self.frames_in >= self.max_frames
                    ):
                        break
                full = n_frames >= self.batch_size
                timed_out = deadline is not None and time.monotonic() >= deadline
                ended = not active or (self.max_frames is not None and self.frames_in >= self.max_frames)
                if pending and (full or timed_out or ended or (n_frames == 0 and not got)):
                    self._flush(pending)
                    n_frames, deadline = 0, None
            if pending and not self.stop_event.is_set():
                self._flush(pending)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, never swallowed
            self.error = exc
            log.debug("worker failed", exc_info=True)
        finally:
            put_done(self.out, Done(self.error, self.frames_in), self.stop_event)
