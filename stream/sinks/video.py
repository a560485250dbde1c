"""Annotated video file(s): one writer per source, opened on its first frame.

``.mp4`` is written with mp4v, ``.avi`` with MJPG (both play after an interrupted run
because ``close`` always releases the writer, which writes the index). The frame rate is
the file's own (given by the pipeline), or for live sources the rate measured over the
first frames (declared rate when known), or ``fps`` when set.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.errors import UserError, check
from stream.results import FrameResult
from stream.sinks.base import Sink
from stream.sinks.registry import SinkContext, register_sink

log = logging.getLogger(__name__)
FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}
MEASURE_FRAMES = 30  # live sources: frames buffered to measure the rate before opening
FALLBACK_FPS = 25.0


def output_paths(path: str | Path, n_sources: int) -> list[Path]:
    """The file of each source: ``path`` for one source, ``<stem>-<k><ext>`` for several."""
    p = Path(path)
    if n_sources <= 1:
        return [p]
    return [p.with_name(f"{p.stem}-{k}{p.suffix}") for k in range(n_sources)]


class _Writer:
    def __init__(self, path: Path, fps: float | None) -> None:
        self.path = path
        self.fps = fps
        self.size: tuple[int, int] | None = None
        self.writer: cv2.VideoWriter | None = None
        self.pending: list[tuple[float, np.ndarray]] = []
        self.frames = 0

    def _open(self, size: tuple[int, int]) -> None:
        if self.fps is None:
            times = [t for t, _ in self.pending]
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            self.fps = (len(times) - 1) / span if span > 0 else FALLBACK_FPS
            self.fps = float(min(max(self.fps, 1.0), 120.0))
        self.size = size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.path.suffix.lower()])
        self.writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, size)
        if not self.writer.isOpened():
            self.writer = None
            raise UserError(f"output {self.path}: cannot open a {FOURCC[self.path.suffix.lower()]} video writer")
        log.info("writing %s (%dx%d at %.2f fps)", self.path, size[0], size[1], self.fps)

    def _put(self, image: np.ndarray) -> None:
        assert self.writer is not None and self.size is not None
        if (image.shape[1], image.shape[0]) != self.size:  # e.g. a camera reconnected at another size
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self.writer.write(image)
        self.frames += 1

    def write(self, t: float, image: np.ndarray) -> None:
        if self.writer is None:
            self.pending.append((t, image))
            if self.fps is not None or len(self.pending) >= MEASURE_FRAMES:
                self._drain()
        else:
            self._put(image)

    def _drain(self) -> None:
        if not self.pending:
            return
        first = self.pending[0][1]
        self._open((first.shape[1], first.shape[0]))
        for _, im in self.pending:
            self._put(im)
        self.pending.clear()

    def close(self) -> None:
        try:
            if self.writer is None and self.pending:
                self._drain()
        finally:
            if self.writer is not None:
                self.writer.release()
                self.writer = None


@dataclass(frozen=True)
class VideoOptions:
    """``sinks.output`` / ``sinks.video_fps``.

    Attributes:
        output: annotated video file (.mp4: mp4v, .avi: MJPG); several sources write
            ``<stem>-<k>.<ext>`` (k = source position). None: no video.
        video_fps: fps written to the video; None: the file's fps, or the measured rate for live.
    """

    output: str | None = None
    video_fps: float | None = None

    def __post_init__(self) -> None:
        if self.output is not None:
            check(Path(self.output).suffix.lower() in FOURCC, "output",
                  f"must end in .mp4 (mp4v) or .avi (MJPG), got {self.output!r}")
        check(self.video_fps is None or 0 < self.video_fps <= 1000, "video_fps",
              f"must be in (0, 1000] or null, got {self.video_fps}")


@register_sink("video", VideoOptions, flat=True)
class VideoSink(Sink):
    """Annotated frames to video files.

    Args:
        path: ``.mp4`` or ``.avi`` file.
        source_ids: every source id in order (several sources: one file each, ``<stem>-<k>``).
        fps: source id -> frames per second (None: measure it).
    """

    def __init__(self, path: str | Path, source_ids: list[str], fps: dict[str, float | None] | None = None) -> None:
        p = Path(path)
        if p.suffix.lower() not in FOURCC:
            raise UserError(f"output {p}: must end in .mp4 (mp4v) or .avi (MJPG)")
        fps = fps or {}
        self.paths = output_paths(p, len(source_ids))
        self._writers = {sid: _Writer(pth, fps.get(sid)) for sid, pth in zip(source_ids, self.paths)}

    @classmethod
    def from_options(cls, opts: VideoOptions, ctx: SinkContext) -> "VideoSink | None":
        """The sink for ``sinks.output`` (None when unset)."""
        if not opts.output:
            return None
        return cls(opts.output, list(ctx.source_ids), {sid: (opts.video_fps or f) for sid, f in ctx.fps.items()})

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        w = self._writers.get(result.frame.source_id)
        if w is None:
            raise KeyError(f"video sink: unknown source {result.frame.source_id!r}")
        w.write(result.frame.capture_time, annotated)

    @property
    def frames_written(self) -> dict[str, int]:
        return {sid: w.frames for sid, w in self._writers.items()}

    def close(self) -> None:
        errors = []
        for w in self._writers.values():
            try:
                w.close()
            except Exception as exc:  # noqa: BLE001 - close every writer, then report
                errors.append(exc)
        if errors:
            raise errors[0]
