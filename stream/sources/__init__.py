"""Frame sources: webcams, network streams (RTSP/HTTP...), video files and image folders.

``open_source(spec)`` returns a :class:`CaptureSource` (the ``stream.frames.FrameSource``
contract) with its own capture thread:

* live sources (webcam index, ``rtsp://``/``http(s)://``... URL) keep only the newest
  ``live_buffer`` frames, dropping (and counting) the oldest; network sources reconnect with
  capped exponential backoff and jitter, emitting DISCONNECTED/RECONNECTING/CONNECTED events and
  no frame while down;
* file and folder sources lose no frame (bounded blocking queue), can loop and be paced.

URLs are redacted (``rtsp://user:***@host/path``) everywhere they are shown.
"""
from __future__ import annotations

import cv2

from stream.redact import redact_text
from stream.sources.capture import CaptureSource
from stream.sources.options import SourceOptions
from stream.sources.readers import (
    CvCaptureReader,
    FolderReader,
    Reader,
    ReaderError,
    ReaderFactory,
    ReadResult,
)
from stream.sources.spec import SourceKind, SourceSpec, list_images, parse_spec

__all__ = [
    "CaptureSource",
    "CvCaptureReader",
    "FolderReader",
    "ReadResult",
    "Reader",
    "ReaderError",
    "ReaderFactory",
    "SourceKind",
    "SourceOptions",
    "SourceSpec",
    "open_source",
    "parse_spec",
]


def open_source(
    spec: str, *, source_id: str | None = None, options: SourceOptions | None = None
) -> CaptureSource:
    """Create (not start) the source a spec names.

    Args:
        spec: webcam index ("0"), network URL (``rtsp://user:pass@host:554/path``, ``http(s)://``,
            ``rtmp://``...), video file path or image folder path.
        source_id: id stamped on frames and events; default: the spec with credentials redacted
            (``webcam:0`` for webcams). Credentials are redacted from it in any case.
        options: buffering, pacing and reconnect options (default ``SourceOptions()``).

    Returns:
        A CaptureSource; call ``start()`` or use it as a context manager.

    Raises:
        UserError: a missing/unreadable path, an empty folder, a malformed URL (naming it).
            A file that is not a video raises UserError from ``start()``. An unreachable URL
            does not raise: the source retries and reports FAILED after ``max_attempts``.
    """
    opts = options or SourceOptions()
    parsed = parse_spec(spec)
    sid = redact_text(source_id) if source_id else parsed.safe_name
    if parsed.kind is SourceKind.NETWORK:
        url = str(parsed.target)
        factory: ReaderFactory = lambda: CvCaptureReader(  # noqa: E731
            url, parsed.safe_name, api=cv2.CAP_FFMPEG,
            open_timeout=opts.open_timeout, read_timeout=opts.read_timeout,
        )
        return CaptureSource(factory, source_id=sid, description=parsed.safe_name, live=True,
                             reconnect=True, open_in_start=False, options=opts)
    if parsed.kind is SourceKind.WEBCAM:
        index = int(parsed.target)
        factory = lambda: CvCaptureReader(index, f"webcam {index}", api=cv2.CAP_ANY)  # noqa: E731
        return CaptureSource(factory, source_id=sid, description=f"webcam {index}", live=True,
                             reconnect=True, open_in_start=True, options=opts)
    if parsed.kind is SourceKind.FILE:
        path = str(parsed.target)
        factory = lambda: CvCaptureReader(path, f"video file {parsed.safe_name}",  # noqa: E731
                                          api=cv2.CAP_FFMPEG, is_file=True)
        return CaptureSource(factory, source_id=sid, description=f"video file {parsed.safe_name}",
                             live=False, reconnect=False, open_in_start=True, options=opts)
    images = list_images(str(parsed.target))
    factory = lambda: FolderReader(images, f"image folder {parsed.safe_name}", fps=opts.fps)  # noqa: E731
    return CaptureSource(factory, source_id=sid, description=f"image folder {parsed.safe_name}",
                         live=False, reconnect=False, open_in_start=True, options=opts, stills=True)
