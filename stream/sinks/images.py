"""Annotated images into a folder: one file per frame, named after the photo it came from.

``--output DIR`` (``sinks.output`` without a video suffix) selects this sink instead of a video: the
registered ``video`` sink type (``stream.sinks.video.VideoSink.from_options``) builds it. A frame of an
image-folder source is written as ``DIR/<its file name>`` (so ``photos/a.jpg`` -> ``DIR/a.jpg``); other
frames as ``DIR/<frame index, 6 digits>.jpg``. With several sources each gets ``DIR/<k>/`` (k = source
position). Each file is written to a temporary name and renamed, so an interrupted run leaves only
complete images.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from stream.errors import UserError
from stream.results import FrameResult
from stream.sinks.base import Sink
from stream.sinks.encoder import CONTAINERS

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = CONTAINERS
WRITABLE = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"})


def is_image_folder_output(path: str | Path) -> bool:
    """True when ``path`` names a folder of images rather than a video (no .mp4/.avi suffix)."""
    return Path(path).suffix.lower() not in VIDEO_SUFFIXES


@dataclass(frozen=True)
class ImageFolderOptions:
    """Options of :class:`ImageFolderSink`.

    Attributes:
        directory: the folder written into (created, existing files of the same name replaced).
        jpeg_quality: quality of ``.jpg`` files in [1, 100].
    """

    directory: str
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if not str(self.directory).strip():
            raise ValueError("output: the image folder must be a non-empty path")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"output.jpeg_quality must be in [1, 100], got {self.jpeg_quality}")


def image_name(frame_name: str | None, index: int) -> str:
    """The file name an annotated frame is saved as: the source image's own name when it has one
    (with a writable suffix; ``.gif`` and other suffixes OpenCV cannot write get ``.png`` appended),
    else ``<index:06d>.jpg``."""
    if not frame_name:
        return f"{index:06d}.jpg"
    name = Path(frame_name).name  # never leave the output folder
    return name if Path(name).suffix.lower() in WRITABLE else f"{name}.png"


class ImageFolderSink(Sink):
    """One annotated image per frame into a folder (per source a subfolder when there are several).

    Args:
        options: the folder and JPEG quality.
        source_ids: every source id in order.
    """

    def __init__(self, options: ImageFolderOptions, source_ids: list[str]) -> None:
        self.options = options
        root = Path(options.directory)
        if root.exists() and not root.is_dir():
            raise UserError(f"output {root}: exists and is not a folder (give a new folder or a .mp4/.avi file)")
        self.dirs = {sid: (root if len(source_ids) <= 1 else root / str(k)) for k, sid in enumerate(source_ids)}
        try:
            for d in self.dirs.values():
                d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"output {root}: cannot create the folder ({exc.strerror or exc})") from None
        self.written = 0

    def write(self, result: FrameResult, annotated: np.ndarray) -> None:
        f = result.frame
        d = self.dirs.get(f.source_id)
        if d is None:
            raise KeyError(f"image folder sink: unknown source {f.source_id!r}")
        path = d / image_name(f.name, f.index)
        params = (
            [cv2.IMWRITE_JPEG_QUALITY, self.options.jpeg_quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
        )
        ok, buf = cv2.imencode(path.suffix, annotated, params)
        if not ok:
            raise UserError(f"output {path}: OpenCV cannot encode {path.suffix} images")
        tmp = path.with_name(f".{path.name}.part")
        try:
            tmp.write_bytes(buf.tobytes())
            os.replace(tmp, path)
        except OSError as exc:
            raise UserError(f"output {path}: cannot be written ({exc.strerror or exc})") from None
        self.written += 1
