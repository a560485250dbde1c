"""Annotated video file(s): one writer per source, opened on its first frame, fed by its own thread.

Written with PyAV (``stream.sinks.encoder``): ``.mp4`` is fragmented MP4 (H.264 by default: plays in
every browser; ``mp4v`` and ``mjpg`` on request), ``.avi`` is MJPG by default. Every packet is flushed
to the file as it is muxed, so after a SIGKILL (an OOM kill, a power cut) everything but the last
keyframe interval (1 s) and the frames queued for the encoder plays; Ctrl-C / SIGTERM flush the
rest. The frame rate is the file's own (given by the pipeline), or for live sources the rate
measured over the first frames (declared rate when known), or ``fps`` when set.

Encoding runs on a writer thread per source (``stream.sinks.writer_thread``): file sources block
the pipeline when the encoder is behind (no frame is lost, as the file source itself never drops
one); live sources drop the newest frame instead and count it (``frames_dropped``), so a slow
encoder never delays detection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream.errors import UserError, check
from stream.results import FrameResult
from stream.sinks.base import Sink
from stream.sinks.encoder import CODECS, CONTAINERS, VideoEncoder, resolve_codec
from stream.sinks.images import ImageFolderOptions, ImageFolderSink, is_image_folder_output
from stream.sinks.registry import SinkContext, register_sink
from stream.sinks.writer_thread import WriterThread

log = logging.getLogger(__name__)
MEASURE_FRAMES = 30  # live sources: frames buffered to measure the rate before opening
FALLBACK_FPS = 25.0
QUEUE_FRAMES = 16


def output_paths(path: str | Path, n_sources: int) -> list[Path]:
    """The file of each source: ``path`` for one source, ``<stem>-<k><ext>`` for several."""
    p = Path(path)
    if n_sources <= 1:
        return [p]
    return [p.with_name(f"{p.stem}-{k}{p.suffix}") for k in range(n_sources)]


class _Writer:
    """One source's file; every method but ``__init__`` runs on that source's writer thread."""

    def __init__(self, path: Path, fps: float | None, codec: str) -> None:
        self.path = path
        self.fps = fps
        self.codec = codec
        self.size: tuple[int, int] | None = None
        self.encoder: VideoEncoder | None = None
        self.pending: list[tuple[float, np.ndarray]] = []
        self.frames = 0

    def _open(self, size: tuple[int, int]) -> None:
        if self.fps is None:
            times = [t for t, _ in self.pending]
            span = times[-1] - times[0] if len(times) > 1 else 0.0
            self.fps = (len(times) - 1) / span if span > 0 else FALLBACK_FPS
            self.fps = float(min(max(self.fps, 1.0), 120.0))
        self.size = size
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.encoder = VideoEncoder(self.path, size, self.fps, self.codec)
        except OSError as exc:
            raise UserError(f"output {self.path}: cannot be written ({exc.strerror or exc})") from None
        log.info("writing %s (%s, %dx%d at %.2f fps)", self.path, self.codec, size[0], size[1], self.fps)

    def _put(self, image: np.ndarray) -> None:
        assert self.encoder is not None
        self.encoder.write(image)  # another size (a camera reconnected) is resized to the file's
        self.frames += 1

    def write(self, item: tuple[float, np.ndarray]) -> None:
        t, image = item
        if self.encoder is None:
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
            if self.encoder is None and self.pending:
                self._drain()
        finally:
            if self.encoder is not None:
                enc, self.encoder = self.encoder, None
                enc.close()


@dataclass(frozen=True)
class VideoOptions:
    """``sinks.output`` / ``sinks.video_fps`` / ``sinks.codec``.

    Attributes:
        output: annotated video file (.mp4: fragmented MP4, .avi); several sources write
            ``<stem>-<k>.<ext>`` (k = source position). A path without a suffix is a folder that gets one
            annotated image per frame instead (``stream.sinks.images.ImageFolderSink``). None: no output.
        video_fps: fps written to the video; None: the file's fps, or the measured rate for live.
        codec: codec of ``output``: auto (h264 for .mp4, mjpg for .avi) | h264 | mp4v | mjpg.
    """

    output: str | None = None
    video_fps: float | None = None
    codec: str = "auto"

    def __post_init__(self) -> None:
        if self.output is not None:
            check(Path(self.output).suffix.lower() in (*CONTAINERS, ""), "output",
                  f"must end in {' or '.join(CONTAINERS)} (a video), or have no suffix (a folder of annotated "
                  f"images), got {self.output!r}")
            if is_image_folder_output(self.output):  # the video-only keys would be silently ignored
                check(self.codec == "auto", "codec",
                      f"is for a video output; {self.output!r} is a folder of images (leave codec at auto)")
                check(self.video_fps is None, "video_fps",
                      f"is for a video output; {self.output!r} is a folder of images (leave video_fps at null)")
        check(self.video_fps is None or 0 < self.video_fps <= 1000, "video_fps",
              f"must be in (0, 1000] or null, got {self.video_fps}")
        codecs = ("auto", *CODECS)
        check(self.codec in codecs, "codec", f"must be one of {', '.join(codecs)}, got {self.codec!r}")


@register_sink("video", VideoOptions, flat=True)
class VideoSink(Sink):
    """Annotated frames to video files.

    Args:
        path: ``.mp4`` or ``.avi`` file.
        source_ids: every source id in order (several sources: one file each, ``<stem>-<k>``).
        fps: source id -> frames per second (None: measure it).
        codec: auto (h264 for .mp4, mjpg for .avi) | h264 | mp4v | mjpg.
        live: source id -> True for live sources (their frames are dropped, never waited for,
            when the encoder falls behind). Missing: a file source (blocking).
        queue_frames: frames each writer thread may hold.
    """

    def __init__(
        self,
        path: str | Path,
        source_ids: list[str],
        fps: dict[str, float | None] | None = None,
        codec: str = "auto",
        live: dict[str, bool] | None = None,
        queue_frames: int = QUEUE_FRAMES,
    ) -> None:
        p = Path(path)
        try:
            self.codec = resolve_codec(p, codec)
        except ValueError as exc:
            raise UserError(f"output {p}: {exc}") from None
        fps = fps or {}
        live = live or {}
        self.paths = output_paths(p, len(source_ids))
        self._writers = {sid: _Writer(pth, fps.get(sid), self.codec) for sid, pth in zip(source_ids, self.paths)}
        self._threads = {
            sid: WriterThread(w.write, queue_frames, block=not live.get(sid, False), name=f"video-{k}")
            for k, (sid, w) in enumerate(self._writers.items())
        }
        self._closed = False

    @classmethod
    def from_options(cls, opts: VideoOptions, ctx: SinkContext) -> "Sink | None":
        """The sink for ``sinks.output``: a video, or for a path without a suffix an
        :class:`~stream.sinks.images.ImageFolderSink` (one annotated image per frame); None when unset."""
        if not opts.output:
            return None
        if is_image_folder_output(opts.output):
            return ImageFolderSink(ImageFolderOptions(opts.output), list(ctx.source_ids))
        fps = {sid: (opts.video_fps or f) for sid, f in ctx.fps.items()}
        return cls(opts.output, list(ctx.source_ids), fps, codec=opts.codec, live=dict(ctx.live))

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        th = self._threads.get(result.frame.source_id)
        if th is None:
            raise KeyError(f"video sink: unknown source {result.frame.source_id!r}")
        th.put((result.frame.capture_time, annotated))

    @property
    def frames_written(self) -> dict[str, int]:
        """Frames encoded per source (final after ``close``)."""
        return {sid: w.frames for sid, w in self._writers.items()}

    @property
    def waited_s(self) -> float:
        """Seconds the pipeline thread waited for the encoders (file sources: their queue was full)."""
        return sum(th.waited_s for th in self._threads.values())

    @property
    def frames_dropped(self) -> dict[str, int]:
        """Frames of live sources dropped because the encoder was behind."""
        return {sid: th.dropped for sid, th in self._threads.items()}

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for sid, th in self._threads.items():
            try:
                th.close()
            except Exception as exc:  # noqa: BLE001 - close every writer, then report
                errors.append(exc)
            try:
                self._writers[sid].close()  # the thread has ended: safe to finish here
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            if th.dropped:
                log.warning("output %s: %d frames dropped (encoder behind a live source)", self._writers[sid].path,
                            th.dropped)
        if errors:
            raise errors[0]
