"""The newest annotated frame of one source, for any number of MJPEG viewers.

The pipeline thread only stores a reference (:meth:`FrameSlot.put`: a lock and an assignment, no
copy, no encoding); viewers encode on their own threads, once per frame for all of them, and only
while someone watches. A slow or stalled viewer simply takes the newest frame when it is ready
again: frames it could not take are skipped for it and never queue up anywhere.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Callable

import cv2
import numpy as np


class FrameSlot:
    """Newest frame of a source plus a one-entry JPEG cache.

    Args:
        width: JPEG width in px (aspect kept; never enlarged); 0: frame size.
        quality: JPEG quality 1..100.
    """

    def __init__(self, width: int = 640, quality: int = 75) -> None:
        self.width = int(width)
        self.quality = int(quality)
        self._lock = threading.Lock()
        self._encode_lock = threading.Lock()
        self._image: np.ndarray | None = None
        self.seq = 0
        self.viewers = 0
        self.encoded = 0  # frames encoded (the cost of serving)
        self._cache: tuple[int, int, bytes] | None = None  # (seq, width, jpeg)
        self._wakers: set[Callable[[], None]] = set()

    def put(self, image: np.ndarray) -> None:
        """Store the newest (H, W, 3) uint8 BGR frame (called by the pipeline thread; never blocks on viewers)."""
        with self._lock:
            self._image = image
            self.seq += 1
            wakers = list(self._wakers) if self.viewers else ()
        for wake in wakers:
            wake()

    def jpeg(self, width: int | None = None) -> tuple[int, bytes] | None:
        """(seq, JPEG bytes) of the newest frame at ``width`` (default: the slot's), or None before any frame.

        Encodes at most once per frame and width for all viewers (run it off the event loop).
        """
        width = self.width if width is None else int(width)
        with self._encode_lock:
            with self._lock:
                image, seq = self._image, self.seq
            if image is None:
                return None
            c = self._cache
            if c is not None and c[0] == seq and c[1] == width:
                return seq, c[2]
            h, w = image.shape[:2]
            if width and w > width:
                image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            data = buf.tobytes()
            self._cache = (seq, width, data)
            self.encoded += 1
            return seq, data

    def watch(self, loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> Callable[[], None]:
        """Register a viewer: ``event`` is set (thread-safely) on every new frame; returns the unregister call."""

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop has closed
                pass

        with self._lock:
            self.viewers += 1
            self._wakers.add(wake)

        def unwatch() -> None:
            with self._lock:
                self.viewers -= 1
                self._wakers.discard(wake)

        return unwatch
