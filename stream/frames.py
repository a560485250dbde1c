"""What flows through the pipeline: frames, source events, and the source contract.

Shared by the capture side (``stream.sources``) and the processing side (worker,
overlays, sinks). Kept tiny and dependency-free on purpose.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Protocol, Union

import numpy as np


class SourceState(str, enum.Enum):
    """Connection state of a source; every change is also an event."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    RECONNECTING = "reconnecting"
    END_OF_STREAM = "end_of_stream"
    FAILED = "failed"  # gave up, or a non-recoverable error (the message says why)


@dataclass(frozen=True)
class Frame:
    """One captured frame.

    Attributes:
        source_id: the source's id (safe to log: never contains credentials).
        index: 0-based index of this frame within its source (counts every decoded frame).
        image: (H, W, 3) uint8 BGR, as OpenCV decodes it.
        capture_time: ``time.monotonic()`` when the frame was read.
        pos_ms: position in time within a file source, else None.
        name: image-folder sources: the image's file name relative to the folder, else None.
    """

    source_id: str
    index: int
    image: np.ndarray
    capture_time: float
    pos_ms: float | None = None
    name: str | None = None


@dataclass(frozen=True)
class SourceEvent:
    """A change of a source's state (connected, disconnected, reconnecting, end of stream...)."""

    source_id: str
    state: SourceState
    time: float  # time.monotonic()
    message: str = ""  # human readable; never contains credentials
    attempt: int = 0  # reconnect attempt number, when reconnecting


@dataclass
class SourceStats:
    """Counters a source keeps (read by the HUD and the summary)."""

    frames_read: int = 0
    frames_dropped: int = 0  # live sources: oldest frames dropped from the buffer
    frames_skipped: int = 0  # unusable frames (zero-size, bad channel count) with reasons below
    skip_reasons: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0  # successful reconnections after the first connection
    conversions: dict[str, int] = field(default_factory=dict)  # frames converted to BGR, by kind (gray, bgra, uint16)


Item = Union[Frame, SourceEvent]


class FrameSource(Protocol):
    """A source of frames with its own capture thread.

    ``start`` launches the thread; ``get`` returns the next Frame or SourceEvent, or
    None after ``timeout`` seconds; ``stop`` ends and joins the thread (idempotent).
    A source that reached the end yields a SourceEvent with state END_OF_STREAM and then
    only None. Sources are context managers (``with src: ...`` stops on exit).
    """

    source_id: str
    live: bool
    stats: SourceStats
    state: SourceState

    def start(self) -> None: ...

    def get(self, timeout: float) -> Item | None: ...

    def stop(self) -> None: ...
