"""The explained snapshot of an alert: the person's box cut from the ANNOTATED frame (the saliency map
blended in and the box drawn), so whoever reads the alert sees why maskstream decided."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np


def crop_box(image: np.ndarray, box: Sequence[float] | None, margin: float = 0.25) -> np.ndarray:
    """``image`` (H, W, 3) cut to ``box`` (x1, y1, x2, y2) enlarged by ``margin`` of its size per side,
    clipped to the frame; the whole image when ``box`` is None or empty after clipping."""
    if box is None:
        return image
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    a, b = int(max(0, np.floor(x1 - mx))), int(max(0, np.floor(y1 - my)))
    c, d = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    if c <= a or d <= b:
        return image
    return image[b:d, a:c]


def encode_jpeg(image: np.ndarray, quality: int = 85, max_side: int = 640) -> bytes:
    """JPEG bytes of (H, W, 3) uint8 BGR ``image``, shrunk so its longer side is at most ``max_side``."""
    h, w = image.shape[:2]
    s = max(h, w)
    if s > max_side:
        image = cv2.resize(image, (max(1, round(w * max_side / s)), max(1, round(h * max_side / s))),
                           interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError(f"cannot encode a {image.shape} image as JPEG")
    return buf.tobytes()


def explained_snapshot(
    given: Any, annotated: np.ndarray | None, box: Sequence[float] | None, margin: float = 0.25
) -> bytes | None:
    """JPEG of an alert's snapshot.

    Args:
        given: the event's own ``snapshot`` (an (h, w, 3) BGR array, JPEG bytes, or a JPEG file path), or None.
        annotated: the newest annotated frame (H, W, 3) of the source, used when ``given`` is None.
        box: the person's box in that frame (None: the whole frame).
        margin: enlargement of the box per side.

    Returns:
        JPEG bytes, or None when there is nothing to show.
    """
    if isinstance(given, (bytes, bytearray)) and given[:2] == b"\xff\xd8":
        return bytes(given)
    if isinstance(given, np.ndarray) and given.ndim == 3 and given.size:
        return encode_jpeg(given)
    if isinstance(given, (str, Path)) and Path(given).is_file():
        data = Path(given).read_bytes()
        if data[:2] == b"\xff\xd8":
            return data
    if annotated is None:
        return None
    return encode_jpeg(crop_box(annotated, box, margin))
