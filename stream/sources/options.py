"""Capture options shared by every source kind (the app's config maps onto these).

These defaults are the only ones: ``stream.config.SourcesConfig`` takes its defaults from here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from stream.backoff import Backoff


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
        def _int(name: str, minimum: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"SourceOptions.{name} must be an integer >= {minimum}, got {value!r}")

        def _pos(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and value > 0
            ):
                raise ValueError(f"SourceOptions.{name} must be a number > 0 seconds, got {value!r}")

        _int("live_buffer", 1)
        _int("file_queue", 1)
        _int("max_attempts", 0)
        for name in ("reconnect_initial", "reconnect_max", "open_timeout", "read_timeout"):
            _pos(name)
        if self.reconnect_max < self.reconnect_initial:
            raise ValueError(
                f"SourceOptions.reconnect_max ({self.reconnect_max}) must be >= "
                f"reconnect_initial ({self.reconnect_initial})"
            )
        if isinstance(self.reconnect_jitter, bool) or not 0 <= self.reconnect_jitter < 1:
            raise ValueError(f"SourceOptions.reconnect_jitter must be in [0, 1), got {self.reconnect_jitter!r}")
        if self.fps is not None:
            _pos("fps")
        for name in ("loop", "realtime"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"SourceOptions.{name} must be true or false, got {getattr(self, name)!r}")

    def backoff(self) -> Backoff:
        """A fresh reconnect schedule built from these options."""
        return Backoff(
            initial=self.reconnect_initial,
            maximum=self.reconnect_max,
            jitter=self.reconnect_jitter,
            seed=self.seed,
        )
