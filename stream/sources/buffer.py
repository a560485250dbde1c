"""The hand-off between a capture thread and its consumer.

One ordered queue of frames and events, with two policies for frames:

* live (webcam, network): at most ``capacity`` frames; a new frame on a full buffer drops the
  OLDEST frame and counts it, so latency never grows (a FIFO on a live camera lags without bound).
* blocking (files, folders): at most ``capacity`` frames; ``put_frame`` waits for the consumer,
  so no frame is lost, and wakes up at once when the buffer is cancelled (``stop``).

Events are never dropped for frames, so the consumer sees every state change in order.
"""
from __future__ import annotations

import collections
import threading
import time

from stream.frames import Frame, Item, SourceEvent

# Events pending beyond this (a consumer that stopped reading a source that keeps
# reconnecting) are dropped oldest first so memory stays bounded.
MAX_PENDING_EVENTS = 256


class ItemBuffer:
    """Bounded, ordered, thread-safe queue of Frames and SourceEvents.

    Args:
        capacity: maximum number of frames held (events are not counted).
        live: drop the oldest frame when full (True) or block the producer (False).
    """

    def __init__(self, capacity: int, live: bool) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity!r}")
        self.capacity = capacity
        self.live = live
        self._items: collections.deque[Item] = collections.deque()
        self._frames = 0
        self._events = 0
        self._cond = threading.Condition()
        self._closed = False  # producer finished: nothing more will come
        self._cancelled = False  # consumer stopped: producers must not wait
        self.dropped_frames = 0
        self.dropped_events = 0

    def put_frame(self, frame: Frame) -> bool:
        """Queue a frame (live: dropping the oldest frame when full; else waiting for room).

        Returns:
            False when the buffer was cancelled (the frame was not queued), else True.
        """
        with self._cond:
            if self.live:
                if self._cancelled:
                    return False
                if self._frames >= self.capacity:
                    self._drop_oldest(Frame)
                    self.dropped_frames += 1
            else:
                while self._frames >= self.capacity and not self._cancelled:
                    self._cond.wait()
                if self._cancelled:
                    return False
            self._items.append(frame)
            self._frames += 1
            self._cond.notify_all()
            return True

    def put_event(self, event: SourceEvent) -> None:
        """Queue an event (never blocks)."""
        with self._cond:
            if self._events >= MAX_PENDING_EVENTS:
                self._drop_oldest(SourceEvent)
                self.dropped_events += 1
            self._items.append(event)
            self._events += 1
            self._cond.notify_all()

    def _drop_oldest(self, kind: type) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, kind):
                del self._items[i]  # by position: Frame equality would compare arrays
                if kind is Frame:
                    self._frames -= 1
                else:
                    self._events -= 1
                return

    def get(self, timeout: float) -> Item | None:
        """Next item in order, or None after ``timeout`` s (at once once closed and drained)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._items:
                if self._closed or self._cancelled:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            item = self._items.popleft()
            if isinstance(item, Frame):
                self._frames -= 1
            else:
                self._events -= 1
            self._cond.notify_all()
            return item

    def drain(self) -> list[Item]:
        """Remove and return everything pending (non-blocking)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._frames = self._events = 0
            self._cond.notify_all()
            return items

    def close(self) -> None:
        """The producer is done: getters return None once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """The consumer is gone: wake and refuse producers, wake getters."""
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def frames_pending(self) -> int:
        """Frames currently queued."""
        with self._cond:
            return self._frames
