"""A live-like FrameSource for benchmarks and soak runs: decoded frames replayed at a fixed rate.

A thread stamps and pushes frames (pre-decoded, looped) every 1/fps seconds into a
drop-oldest buffer, exactly like a camera whose consumer is slower than it: nothing
queues up, ``stats.frames_dropped`` counts what the consumer missed. Decoding is done once
up front so the measured cost is the pipeline's, not the decoder's.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from stream.frames import Frame, SourceEvent, SourceState, SourceStats


def load_frames(path: str | Path, size: tuple[int, int] | None = None, limit: int = 250) -> list[np.ndarray]:
    """Up to ``limit`` frames of a video, resized to ``size`` (W, H) when given."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < limit:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(f, size, interpolation=cv2.INTER_LINEAR) if size else f)
    cap.release()
    if not frames:
        raise SystemExit(f"cannot read frames from {path}")
    return frames


class PacedSource:
    """Replays ``frames`` at ``fps`` (looping) for ``duration_s`` seconds (None: until stopped)."""

    def __init__(
        self,
        frames: list[np.ndarray],
        fps: float,
        source_id: str = "paced",
        buffer: int = 1,
        duration_s: float | None = None,
    ) -> None:
        self.frames, self.fps, self.source_id = frames, float(fps), source_id
        self.live = True
        self.stats = SourceStats()
        self.state = SourceState.CONNECTING
        self.duration_s = duration_s
        self._buf: collections.deque = collections.deque()
        self._cap = buffer
        self._cv = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _push(self, item) -> None:
        with self._cv:
            if isinstance(item, Frame):
                frames = [x for x in self._buf if isinstance(x, Frame)]
                if len(frames) >= self._cap:
                    self._buf.remove(frames[0])
                    self.stats.frames_dropped += 1
                self.stats.frames_read += 1
            self._buf.append(item)
            self._cv.notify()

    def _run(self) -> None:
        self.state = SourceState.CONNECTED
        self._push(SourceEvent(self.source_id, SourceState.CONNECTED, time.monotonic(), "paced replay"))
        t0 = time.monotonic()
        i = 0
        while not self._stop.is_set():
            due = t0 + i / self.fps
            if self.duration_s is not None and due - t0 >= self.duration_s:
                break
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                break
            self._push(Frame(self.source_id, i, self.frames[i % len(self.frames)], time.monotonic(), None))
            i += 1
        self.state = SourceState.END_OF_STREAM
        self._push(SourceEvent(self.source_id, SourceState.END_OF_STREAM, time.monotonic(), "replay ended"))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"paced-{self.source_id}", daemon=True)
        self._thread.start()

    def get(self, timeout: float):
        with self._cv:
            if not self._buf:
                self._cv.wait(timeout)
            return self._buf.popleft() if self._buf else None

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(3.0)
