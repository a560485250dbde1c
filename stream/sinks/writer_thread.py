"""A writer thread fed by a bounded queue, so encoding never runs on the pipeline's thread.

Two policies, chosen per source: ``block`` (file sources: the pipeline waits for the encoder, no
frame is lost, like the file source's own blocking queue) and ``drop`` (live sources: when the
encoder falls behind, the new frame is dropped and counted; the pipeline never waits, so latency
and detection are untouched).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

_STOP = object()
PUT_POLL_S = 0.2


class WriterThread:
    """Runs ``handler(item)`` for each queued item on one daemon thread.

    Args:
        handler: called on the thread for every item, in order. An exception ends the thread;
            it is re-raised by the next ``put`` or by ``close`` (callers that want to survive
            errors catch them inside ``handler``).
        maxsize: queue length (items).
        block: True: ``put`` waits for room; False: ``put`` drops the item when full.
        name: thread name (shows in debuggers and thread dumps).
    """

    def __init__(self, handler: Callable[[Any], None], maxsize: int = 16, block: bool = True, name: str = "writer"):
        self.handler = handler
        self.block = block
        self.dropped = 0
        self.waited_s = 0.0  # time ``put`` spent waiting for room (block policy)
        self.error: BaseException | None = None
        self._reported = False
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is _STOP:
                return
            try:
                self.handler(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                self.error = exc
                return

    def _raise_error(self) -> None:
        if self.error is not None and not self._reported:
            self._reported = True  # raised once: close() after a failed put() does not raise again
            raise self.error

    def put(self, item: Any, force_block: bool = False) -> bool:
        """Queue ``item``; returns False when it was dropped (``drop`` policy, queue full).

        ``force_block`` waits even under the drop policy (control items that must not be lost).
        Raises the handler's exception if the thread died on one.
        """
        if self.error is not None:
            self._raise_error()
            raise RuntimeError(f"{self._thread.name}: writer failed earlier ({self.error})")
        if not (self.block or force_block):
            try:
                self._q.put_nowait(item)
                return True
            except queue.Full:
                self.dropped += 1
                return False
        try:
            self._q.put_nowait(item)
            return True
        except queue.Full:
            pass
        t0 = time.perf_counter()
        while True:
            try:
                self._q.put(item, timeout=PUT_POLL_S)
                self.waited_s += time.perf_counter() - t0
                return True
            except queue.Full:
                self._raise_error()
                if not self._thread.is_alive():
                    raise RuntimeError("writer thread ended unexpectedly") from None

    @property
    def pending(self) -> int:
        """Items waiting in the queue."""
        return self._q.qsize()

    def close(self, timeout: float = 60.0) -> None:
        """Finish every queued item, then stop the thread; re-raises the handler's error.

        A thread still busy after ``timeout`` seconds is left as a daemon (logged).
        """
        if self._thread.is_alive():
            while self._thread.is_alive():
                try:
                    self._q.put(_STOP, timeout=PUT_POLL_S)
                    break
                except queue.Full:
                    continue
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: still writing after %.0f s (left running)", self._thread.name, timeout)
        self._raise_error()
