"""Capture options shared by every source kind (the app's config maps onto these).

These fields, defaults and checks are the only ones: ``stream.config.SourcesConfig`` is this class plus
``specs``. A bad value raises ``stream.errors.ConfigValueError`` naming the field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from stream.backoff import Backoff
from stream.errors import check


@dataclass(frozen=True)
class SourceOptions:
    """How a source buffers, paces and reconnects.

    Attributes:
        live_buffer: live sources (webcam, network) keep at most this many newest frames;
            older ones are dropped and counted in ``SourceStats.frames_dropped``.
        file_queue: file/folder sources queue at most this many frames; the capture thread then
            waits for the consumer (no frame is lost).
        reconnect_initial: delay before the first reconnect attempt, seconds.
        reconnect_max: cap on the delay between reconnect attempts, seconds.
        reconnect_jitter: relative random spread of each delay, in [0, 1).
        max_attempts: reconnect attempts after a failure before giving up with FAILED; 0 = forever.
            Counted from the last successful connection.
        open_timeout: network sources: seconds an open may take (FFmpeg's open timeout).
        read_timeout: network sources: seconds a read may block before the stream counts as down.
        loop: file/folder sources start again at the end instead of ending.
        fps: file/folder sources: deliver at most this many frames per second (None: as fast as
            the consumer takes them).
        realtime: file sources: pace at the file's own frame rate (ignored when ``fps`` is set).
        seed: seed for the reconnect jitter (None: random), for reproducible tests.
    """

    live_buffer: int = 1
    file_queue: int = 16
    reconnect_initial: float = 0.5
    reconnect_max: float = 10.0
    reconnect_jitter: float = 0.2
    max_attempts: int = 0
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    loop: bool = False
    fps: float | None = None
    realtime: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        def _int(name: str, minimum: int, note: str = "") -> None:
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, int) and value >= minimum
            check(ok, name, f"must be an int >= {minimum}{note}, got {value!r}")

        def _pos(name: str, null: str = "") -> None:
            value = getattr(self, name)
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            check(ok, name, f"must be > 0{null}, got {value!r}")

        _int("live_buffer", 1)
        _int("file_queue", 1)
        _int("max_attempts", 0, " (0: forever)")
        for name in ("reconnect_initial", "reconnect_max", "open_timeout", "read_timeout"):
            _pos(name, " seconds")
        check(self.reconnect_max >= self.reconnect_initial, "reconnect_max",
              f"must be >= reconnect_initial ({self.reconnect_initial}), got {self.reconnect_max}")
        check(not isinstance(self.reconnect_jitter, bool) and 0 <= self.reconnect_jitter < 1, "reconnect_jitter",
              f"must be in [0, 1), got {self.reconnect_jitter!r}")
        if self.fps is not None:
            _pos("fps", " or null")
        for name in ("loop", "realtime"):
            check(isinstance(getattr(self, name), bool), name, f"must be true or false, got {getattr(self, name)!r}")

    def backoff(self) -> Backoff:
        """A fresh reconnect schedule built from these options."""
        return Backoff(
            initial=self.reconnect_initial,
            maximum=self.reconnect_max,
            jitter=self.reconnect_jitter,
            seed=self.seed,
        )
