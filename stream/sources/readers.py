"""Readers: the small blocking interface a capture thread pulls frames through.

A reader wraps one connection to one source (a ``cv2.VideoCapture`` or a list of image
files). The capture thread makes a new reader for every (re)connect, so a reader never has
to recover by itself. Tests inject fake readers to simulate cameras and failures.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from stream.redact import redact_text

log = logging.getLogger("stream.sources")


class ReaderError(Exception):
    """Opening a reader failed; the message is safe to show (no credentials)."""


@dataclass(frozen=True)
class ReadResult:
    """One read.

    Attributes:
        image: the decoded frame as returned (any shape/dtype; normalised later), or None.
        pos_ms: position within a file, milliseconds, else None.
        skip_reason: set when the reader already knows the frame is unusable.
        name: image folders: the image's file name relative to the folder.
    """

    image: np.ndarray | None
    pos_ms: float | None = None
    skip_reason: str | None = None
    name: str | None = None


class Reader(Protocol):
    """One open connection to a source."""

    fps: float | None  # nominal frame rate when known

    def open(self) -> None:
        """Connect; raise ReaderError (safe message) on failure."""

    def read(self) -> ReadResult | None:
        """Next frame, or None at the end of a file or when a live stream is lost."""

    def close(self) -> None:
        """Release the connection (idempotent)."""


ReaderFactory = Callable[[], Reader]


class CvCaptureReader:
    """A ``cv2.VideoCapture`` on a webcam index, a network URL or a video file.

    Args:
        target: webcam index or URL/path string.
        description: what to call it in messages (already redacted).
        api: OpenCV backend (``cv2.CAP_FFMPEG`` for URLs and files, ``cv2.CAP_ANY`` for webcams).
        open_timeout: seconds (network only: passed as CAP_PROP_OPEN_TIMEOUT_MSEC), or None.
        read_timeout: seconds (network only: passed as CAP_PROP_READ_TIMEOUT_MSEC), or None.
        is_file: probe one frame at open (a file no frame decodes from is an error) and report pos_ms.
    """

    def __init__(
        self,
        target: int | str,
        description: str,
        *,
        api: int = cv2.CAP_ANY,
        open_timeout: float | None = None,
        read_timeout: float | None = None,
        is_file: bool = False,
    ) -> None:
        self.target = target
        self.description = description
        self.api = api
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.is_file = is_file
        self.fps: float | None = None
        self._cap: cv2.VideoCapture | None = None
        self._pending: ReadResult | None = None
        self._count = 0  # frames read through this reader (for pos_ms fallback)

    def open(self) -> None:
        params: list[int] = []
        if self.open_timeout is not None:
            params += [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(self.open_timeout * 1000)]
        if self.read_timeout is not None:
            params += [cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(self.read_timeout * 1000)]
        try:
            cap = cv2.VideoCapture(self.target, self.api, params) if params else cv2.VideoCapture(self.target, self.api)
        except cv2.error as exc:  # e.g. backend missing
            raise ReaderError(f"cannot open {self.description}: {redact_text(str(exc)).strip()}") from None
        if not cap.isOpened():
            cap.release()
            raise ReaderError(f"cannot open {self.description}")
        self._cap = cap
        self._count = 0
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if math.isfinite(fps) and 0 < fps < 1000 else None
        if self.is_file:
            first = self._read_cap()
            if first is None:
                self.close()
                raise ReaderError(f"no frame could be decoded from {self.description} (not a video?)")
            self._pending = first

    def read(self) -> ReadResult | None:
        if self._pending is not None:
            result, self._pending = self._pending, None
            return result
        if self._cap is None:
            return None
        return self._read_cap()

    def _read_cap(self) -> ReadResult | None:
        assert self._cap is not None
        started = time.monotonic()
        try:
            ok, image = self._cap.read()
        except cv2.error as exc:
            log.warning("read from %s failed: %s", self.description, redact_text(str(exc)).strip())
            return None
        if not ok:
            return None
        if self.read_timeout is not None and time.monotonic() - started >= self.read_timeout:
            # FFmpeg's read timeout fired but the decoder still handed back a frame it held
            # (decoder delay): an old frame. The stream has stalled; report it lost instead.
            log.warning("read from %s stalled for %.1f s; dropping the late frame",
                        self.description, time.monotonic() - started)
            return None
        pos_ms = self._pos_ms() if self.is_file else None
        self._count += 1
        return ReadResult(image, pos_ms)

    def _pos_ms(self) -> float | None:
        assert self._cap is not None
        # POS_MSEC after read() is the timestamp of the frame just decoded.
        pos = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        if math.isfinite(pos) and (pos > 0 or self._count == 0):
            return float(pos)
        return self._count * 1000.0 / self.fps if self.fps else None

    def close(self) -> None:
        cap, self._cap = self._cap, None
        self._pending = None
        if cap is not None:
            cap.release()


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})


class FolderReader:
    """Images of a folder, in natural name order (``img2`` before ``img10``).

    Args:
        paths: the image files, already sorted.
        description: what to call the folder in messages.
        fps: nominal rate for pacing/positions, or None.
    """

    def __init__(self, paths: Sequence[Path], description: str, fps: float | None = None) -> None:
        self.paths = list(paths)
        self.description = description
        self.fps = fps
        self._next = 0
        self._open = False

    def open(self) -> None:
        if not self.paths:
            raise ReaderError(f"no images in folder {self.description}")
        self._next = 0
        self._open = True

    def read(self) -> ReadResult | None:
        if not self._open or self._next >= len(self.paths):
            return None
        path = self.paths[self._next]
        self._next += 1
        try:
            data = np.fromfile(str(path), dtype=np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
        except (OSError, cv2.error) as exc:
            log.warning("cannot read image %s: %s", path, exc)
            return ReadResult(None, skip_reason="unreadable_image", name=path.name)
        if image is None:
            log.warning("cannot decode image %s", path)
            return ReadResult(None, skip_reason="unreadable_image", name=path.name)
        return ReadResult(image, None, name=path.name)  # folders are listed flat: the name is the relative path

    def close(self) -> None:
        self._open = False
