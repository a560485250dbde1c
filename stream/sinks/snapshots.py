"""JPEG snapshots of annotated frames with an alerting class (``without_mask`` by default).

Rate-limited per source (at most one per ``interval_s`` of capture time). Files are
``<dir>/<source>_<frame_index>_<label>.jpg`` with the source id redacted and made file-safe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np

from stream.errors import check
from stream.results import FrameResult
from stream.sinks.base import Sink, output_dir, safe_name
from stream.sinks.registry import SinkContext, register_sink


@dataclass(frozen=True)
class SnapshotOptions:
    """``sinks.snapshots`` and its settings.

    Attributes:
        snapshots: directory for JPEG snapshots of ``snapshot_labels`` detections. None: off.
        snapshot_labels: classes that trigger a snapshot.
        snapshot_interval_s: at most one snapshot per source per this many seconds.
    """

    snapshots: str | None = None
    snapshot_labels: tuple[str, ...] = ("without_mask",)
    snapshot_interval_s: float = 2.0

    def __post_init__(self) -> None:
        check(self.snapshot_interval_s >= 0, "snapshot_interval_s", f"must be >= 0, got {self.snapshot_interval_s}")


@register_sink("snapshots", SnapshotOptions, flat=True)
class SnapshotSink(Sink):
    """Annotated JPEGs of frames showing one of ``labels``.

    Args:
        directory: created if missing.
        labels: class names that trigger a snapshot (a detection's label, or the frame label).
        interval_s: minimum capture-time gap between two snapshots of one source.
        quality: JPEG quality.
    """

    def __init__(
        self,
        directory: str | Path,
        labels: Iterable[str] = ("without_mask",),
        interval_s: float = 2.0,
        quality: int = 90,
    ) -> None:
        self.dir = output_dir("snapshots", directory)
        self.labels = frozenset(labels)
        self.interval_s = float(interval_s)
        self.quality = int(quality)
        self._last: dict[str, float] = {}
        self.written: list[Path] = []

    @classmethod
    def from_options(cls, opts: SnapshotOptions, ctx: SinkContext) -> "SnapshotSink | None":
        """The sink for ``sinks.snapshots`` (None when unset)."""
        return cls(opts.snapshots, opts.snapshot_labels, opts.snapshot_interval_s) if opts.snapshots else None

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        hits = [d.label for d in result.detections if d.label in self.labels]
        if not hits and result.label in self.labels:
            hits = [result.label]
        if not hits:
            return
        sid = result.frame.source_id
        t = result.frame.capture_time
        last = self._last.get(sid)
        if last is not None and t - last < self.interval_s:
            return
        self._last[sid] = t
        path = self.dir / f"{safe_name(sid)}_{result.frame.index:07d}_{hits[0]}.jpg"
        if not cv2.imwrite(str(path), annotated, [cv2.IMWRITE_JPEG_QUALITY, self.quality]):
            raise OSError(f"snapshots: cannot write {path}")
        self.written.append(path)
