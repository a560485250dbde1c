"""Square windows cut from an image with border padding, and boxes mapped into them."""
from __future__ import annotations

import cv2
import numpy as np


def cut_window(image: np.ndarray, x0: int, y0: int, side: int, size: int) -> np.ndarray:
    """Cut the square ``[x0, x0+side) x [y0, y0+side)`` from ``image`` and resize it to ``size``.

    Parts of the window outside the image are filled by replicating the edge pixels
    (``cv2.BORDER_REPLICATE``): no black frame a classifier could key on, and no mirrored
    second face as reflection padding could create.

    Args:
        image: (H, W, 3) uint8.
        x0, y0: window top-left corner in image pixels (may be negative).
        side: window side in pixels (> 0); the window must overlap the image.
        size: output side.

    Returns:
        (size, size, 3) uint8. Pixel-edge coordinates map as ``u = (x - x0) * size / side``.
    """
    h, w = image.shape[:2]
    if side <= 0:
        raise ValueError(f"side must be > 0, but got {side}")
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(w, x0 + side), min(h, y0 + side)
    if ax1 <= ax0 or ay1 <= ay0:
        raise ValueError(f"window ({x0}, {y0}, side {side}) does not overlap the {w}x{h} image")
    region = image[ay0:ay1, ax0:ax1]
    top, bottom, left, right = ay0 - y0, y0 + side - ay1, ax0 - x0, x0 + side - ax1
    if top or bottom or left or right:
        region = cv2.copyMakeBorder(region, top, bottom, left, right, cv2.BORDER_REPLICATE)
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(region, (size, size), interpolation=interp)


def box_to_window(xyxy: tuple[float, float, float, float], x0: float, y0: float, side: float,
                  size: int) -> tuple[float, float, float, float]:
    """Map an image-pixel box into the coordinates of a window resized to ``size``."""
    s = size / side
    x1, y1, x2, y2 = xyxy
    return ((x1 - x0) * s, (y1 - y0) * s, (x2 - x0) * s, (y2 - y0) * s)


def overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """True when two xyxy boxes share a region of positive area."""
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])
