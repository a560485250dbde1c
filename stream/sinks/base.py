"""The sink contract: a context manager that receives rendered results and source events."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from stream.errors import UserError
from stream.frames import SourceEvent
from stream.redact import redact_text
from stream.results import FrameResult, SkippedFrame


def wall_time(monotonic_t: float, _offset: list[float] = []) -> float:  # noqa: B006 - process-wide offset
    """A ``time.monotonic()`` stamp as Unix time (offset fixed once per process)."""
    if not _offset:
        _offset.append(time.time() - time.monotonic())
    return monotonic_t + _offset[0]


def safe_name(source_id: str) -> str:
    """A redacted source id reduced to file-name-safe characters."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", redact_text(source_id)).strip("_")[:80] or "source"


def output_dir(kind: str, directory: str | Path) -> Path:
    """Create a sink's output directory (and its parents) -> its path.

    Raises:
        UserError: it cannot be created; the message names the sink ``kind`` and the directory.
    """
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{kind} {path}: cannot create the directory ({exc.strerror or exc})") from None
    return path


class Sink:
    """Base sink: every method is a no-op; ``close`` must be idempotent and never raise twice.

    A sink type that ``run`` can build from the config also registers itself with its options dataclass
    (``stream.sinks.registry.register_sink``) and has ``from_options(options, ctx) -> Sink | None``.
    """

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        """One processed frame and its annotated image (H, W, 3) uint8 BGR."""

    def event(self, ev: SourceEvent) -> None:
        """A source state change."""

    def skip(self, item: SkippedFrame) -> None:
        """A frame the worker could not use."""

    def person(self, event: dict) -> None:
        """A per-person event from the tracker: ``{"type": "person", "event": "appeared" | "decided" |
        "changed" | "left", "source", "person_id", "frame_index", "time", "label", ...}``."""

    def close(self) -> None:
        """Flush and close (idempotent)."""
