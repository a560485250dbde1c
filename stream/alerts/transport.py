"""A transport's delivery thread and bounded queue: ``submit`` never blocks (a full queue drops the new
alert and counts it); ``close`` keeps delivering until the queue is empty or the flush time is over, then
reports what it could not deliver."""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

log = logging.getLogger(__name__)


class Transport:
    """Base of the webhook and MQTT transports: subclasses implement :meth:`deliver`.

    Args:
        name: for messages and metrics ("webhook", "mqtt").
        queue_size: alerts waiting at most; beyond it ``submit`` drops and counts.
    """

    name = "transport"

    def __init__(self, queue_size: int) -> None:
        self.queue_size = int(queue_size)
        self._q: collections.deque = collections.deque()
        self._cv = threading.Condition()
        self._stopping = False
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self.submitted = 0
        self.sent = 0
        self.dropped = 0  # queue full
        self.failed = 0  # given up after its attempts (or refused by the receiver)
        self.undelivered = 0  # still queued when the flush time ran out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"maskstream-{self.name}", daemon=True)
        self._thread.start()

    def submit(self, msg: Any) -> bool:
        """Queue ``msg``; False (and one more ``dropped``) when the queue is full. Never blocks."""
        with self._cv:
            if len(self._q) >= self.queue_size:
                self.dropped += 1
                return False
            self._q.append(msg)
            self.submitted += 1
            self._cv.notify()
        return True

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._q)

    def deliver(self, msg: Any) -> bool | None:
        """Deliver one message: True sent, False given up (counted as failed), None: retry later."""
        raise NotImplementedError

    def sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the flush time ran out; False when aborted."""
        return not self._abort.wait(max(0.0, seconds))

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._q and not self._stopping:
                    self._cv.wait(0.5)
                if not self._q or self._abort.is_set():
                    return
                msg = self._q[0]
            try:
                ok = self.deliver(msg)
            except Exception as exc:  # noqa: BLE001 - a transport bug must not kill the run
                log.warning("%s: delivery failed (%s)", self.name, type(exc).__name__)
                ok = False
            if ok is None:
                if self._abort.is_set():
                    return
                continue
            with self._cv:
                if self._q and self._q[0] is msg:
                    self._q.popleft()
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1

    def close(self, flush_s: float) -> int:
        """Deliver what is queued for at most ``flush_s`` seconds, stop; returns how many were not delivered."""
        with self._cv:
            self._stopping = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(flush_s)
            self._abort.set()
            self._thread.join(2.0)
        with self._cv:
            self.undelivered = len(self._q)
        return self.undelivered

    def counts(self) -> dict:
        return {"submitted": self.submitted, "sent": self.sent, "dropped": self.dropped, "failed": self.failed,
                "pending": self.pending, "undelivered": self.undelivered}
