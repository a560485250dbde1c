"""One video file written through PyAV (FFmpeg's libraries), playable even after a crash.

Why PyAV: its wheels carry FFmpeg with libx264 (and NVENC), so H.264 — the codec every browser
plays — needs no system package; packets are muxed by us, so the container can be written as
*fragmented* MP4 (``movflags=frag_keyframe+empty_moov+default_base_moof``) and flushed after every
packet (``flush_packets=1``). OpenCV's ``VideoWriter`` writes the MP4 index only on ``release()``
(a SIGKILL leaves ``moov atom not found``) and its pip wheels have no H.264 encoder; an ffmpeg
subprocess would need a system binary and a pipe per file, and its crash behaviour is its own.

Measured (``tools/bench_record.py --crash``: SIGKILL after 4 s of 320x240 at 25 fps, GOP 25):
fragmented MP4 + flush_packets 50 of 73 frames decode (0.9 s lost, < 1 GOP); fragmented MP4
without flushing, plain MP4 and OpenCV's mp4v writer 0 (``moov atom not found`` or an empty
file); Matroska + flush 50 of 72; AVI (MJPG) + flush 73 of 73. MP4 wins: it plays in browsers.

A fragment ends at each keyframe, so at most ``gop_s`` seconds (plus the writer queue) are lost.
``libx264`` runs with ``tune=zerolatency`` (no frames held back for look-ahead, so nothing extra sits
in the encoder when the process dies) and ``preset=superfast`` (640x480: 3.5 ms of CPU a frame and
the same file size as ``veryfast`` at 4.7 ms; ``ultrafast`` is 2.5 ms but files twice as big).
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

log = logging.getLogger(__name__)

CODECS = ("h264", "mp4v", "mjpg")
CONTAINERS = (".mp4", ".avi")
DEFAULT_CODEC = {".mp4": "h264", ".avi": "mjpg"}
_FFMPEG_CODEC = {"h264": "libx264", "mp4v": "mpeg4", "mjpg": "mjpeg"}
_PIX_FMT = {"h264": "yuv420p", "mp4v": "yuv420p", "mjpg": "yuvj420p"}
_FRAGMENTED_MP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}


def resolve_codec(path: str | Path, codec: str = "auto") -> str:
    """The codec for ``path``: ``auto`` picks h264 for .mp4 and mjpg for .avi.

    Raises:
        ValueError: unknown extension or codec (the message names both choices).
    """
    ext = Path(path).suffix.lower()
    if ext not in CONTAINERS:
        raise ValueError(f"must end in {' or '.join(CONTAINERS)}, got {str(path)!r}")
    if codec == "auto":
        return DEFAULT_CODEC[ext]
    if codec not in CODECS:
        raise ValueError(f"codec must be auto or one of {', '.join(CODECS)}, got {codec!r}")
    return codec


def even_size(width: int, height: int) -> tuple[int, int]:
    """(width, height) rounded up to even numbers (4:2:0 chroma needs them)."""
    return width + (width & 1), height + (height & 1)


class VideoEncoder:
    """Frames in, one crash-tolerant video file out. Not thread-safe: one thread writes.

    Args:
        path: ``.mp4`` (fragmented MP4) or ``.avi`` file; the parent must exist.
        size: (width, height) of the frames; odd sizes are padded by one edge pixel.
        fps: nominal frame rate (constant-rate timestamps, and x264's rate control).
        codec: h264 | mp4v | mjpg (``resolve_codec``).
        gop_s: seconds between keyframes (= the most a crash can lose, plus frames in flight).
        crf: x264 quality (lower: better, bigger); mp4v/mjpg use a fixed quantiser.
        variable_rate: timestamps come from ``write(..., t=seconds)`` instead of the frame count
            (live recordings: dropped frames and gaps keep their real duration).

    Raises:
        OSError: the file cannot be created (also later from ``write``/``close``: disk full...).
    """

    def __init__(
        self,
        path: str | Path,
        size: tuple[int, int],
        fps: float,
        codec: str = "h264",
        gop_s: float = 1.0,
        crf: int = 23,
        variable_rate: bool = False,
    ) -> None:
        self.path = Path(path)
        self.codec = resolve_codec(self.path, codec)
        self.in_size = (int(size[0]), int(size[1]))
        self.size = even_size(*self.in_size)
        self.fps = float(fps)
        self.variable_rate = variable_rate
        self.frames = 0
        self._last_pts = -1
        rate = Fraction(self.fps).limit_denominator(1001)
        ext = self.path.suffix.lower()
        opts = dict(_FRAGMENTED_MP4) if ext == ".mp4" else {"flush_packets": "1"}
        self._container = av.open(str(self.path), "w", options=opts)
        try:
            st = self._container.add_stream(_FFMPEG_CODEC[self.codec], rate=rate)
            st.width, st.height = self.size
            st.pix_fmt = _PIX_FMT[self.codec]
            cc = st.codec_context
            cc.gop_size = max(1, round(self.fps * gop_s))
            if variable_rate:
                cc.time_base = Fraction(1, 1000)
                st.time_base = Fraction(1, 1000)
            if self.codec == "h264":
                st.options = {"preset": "superfast", "tune": "zerolatency", "crf": str(crf)}
            elif self.codec == "mp4v":
                cc.qmin, cc.qmax = 2, 8
            else:
                cc.qmin, cc.qmax = 2, 6
            self._stream = st
        except Exception:
            self._container.close()
            raise
        self._tb = Fraction(1, 1000) if variable_rate else 1 / rate

    def write(self, image: np.ndarray, t: float | None = None) -> None:
        """Encode one (H, W, 3) uint8 BGR image; another size is resized to the file's.

        Args:
            image: the frame.
            t: seconds since the file's start (``variable_rate`` only; ignored otherwise).
        """
        h, w = image.shape[:2]
        if (w, h) != self.in_size:
            image = cv2.resize(image, self.in_size, interpolation=cv2.INTER_AREA)
        if self.size != self.in_size:
            image = cv2.copyMakeBorder(
                image, 0, self.size[1] - self.in_size[1], 0, self.size[0] - self.in_size[0], cv2.BORDER_REPLICATE
            )
        image = np.ascontiguousarray(image)
        if _PIX_FMT[self.codec] == "yuv420p":  # OpenCV's BT.601 limited-range I420: 4x cheaper than swscale
            frame = av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_BGR2YUV_I420), format="yuv420p")
        else:
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
        if self.variable_rate and t is not None:
            pts = max(int(round(t * 1000)), self._last_pts + 1)
        else:
            pts = self.frames if not self.variable_rate else self._last_pts + round(1000 / self.fps)
        self._last_pts = pts
        frame.pts = pts
        frame.time_base = self._tb
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and close the file (idempotent)."""
        c, self._container = self._container, None
        if c is None:
            return
        try:
            for packet in self._stream.encode(None):
                c.mux(packet)
        finally:
            c.close()

    def abort(self) -> None:
        """Close without flushing (after a write error); never raises."""
        c, self._container = self._container, None
        if c is not None:
            try:
                c.close()
            except Exception as exc:  # noqa: BLE001 - the file is already broken; keep what is on disk
                log.debug("closing %s after an error: %s", self.path, exc)
