"""Options of the continuous recorder (``stream.sinks.record.RecordSink``), config section ``sinks.record``.

Kept apart from the sink module because ``stream.config`` imports it and the ``stream.sinks``
package imports the worker, which imports ``stream.config`` (a cycle). Validation raises
``stream.config.ConfigValueError`` with the bare key; the loader prefixes ``sinks.record.``.
"""

from __future__ import annotations

from dataclasses import dataclass

CODECS = ("h264", "mp4v", "mjpg")


def check(cond: bool, key: str, message: str) -> None:
    """Raise the config loader's error for ``key`` when ``cond`` is false."""
    if not cond:
        from stream.config import ConfigValueError  # deferred: stream.config imports this module

        raise ConfigValueError(key, message)


@dataclass(frozen=True)
class RecordOptions:
    """Continuous recording of every source into short segments.

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
