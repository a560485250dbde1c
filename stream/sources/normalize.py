"""Turn whatever a reader returns into the (H, W, 3) uint8 BGR image the pipeline expects."""
from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np


class Normalized(NamedTuple):
    """Result of :func:`to_bgr`.

    Attributes:
        image: (H, W, 3) uint8 BGR, or None when the frame is unusable.
        skip_reason: why the frame was skipped (set iff ``image`` is None).
        converted: what was converted (``gray``, ``bgra``, ``uint16``...), or None.
    """

    image: np.ndarray | None
    skip_reason: str | None = None
    converted: str | None = None


def to_bgr(image: object) -> Normalized:
    """Validate a decoded frame and convert it to 3-channel uint8 BGR.

    Grayscale ((H, W) or (H, W, 1)) and BGRA ((H, W, 4)) frames are converted; 16-bit frames
    are scaled to 8 bits. Anything else unusable (None, empty, bad shape or dtype) is reported as a
    skip reason instead of raising, so one bad frame never stops a stream.

    Args:
        image: what the reader produced, normally an np.ndarray (H, W[, C]).

    Returns:
        Normalized(image (H, W, 3) uint8 or None, skip_reason, converted).
    """
    if image is None:
        return Normalized(None, "none")
    if not isinstance(image, np.ndarray):
        return Normalized(None, "not_an_array")
    if image.size == 0 or image.ndim < 2 or image.shape[0] == 0 or image.shape[1] == 0:
        return Normalized(None, "empty")
    if image.ndim > 3:
        return Normalized(None, f"ndim_{image.ndim}")
    converted: list[str] = []
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
        converted.append("uint16")
    elif image.dtype != np.uint8:
        return Normalized(None, f"dtype_{image.dtype}")
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels == 1:
        image = cv2.cvtColor(image.reshape(image.shape[0], image.shape[1]), cv2.COLOR_GRAY2BGR)
        converted.append("gray")
    elif channels == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
        converted.append("bgra")
    elif channels != 3:
        return Normalized(None, f"channels_{channels}")
    if not image.flags.c_contiguous:
        image = np.ascontiguousarray(image)
    return Normalized(image, None, "+".join(converted) or None)
