"""Camera motion between two frames, for the tracker (a pan moves every face at once).

At a low frame rate a camera pan moves every face by about its own size between frames, so a face's
old place is taken by its neighbour and a tracker that predicts from the faces' own past alone swaps
them. Like BoT-SORT's camera-motion compensation (there: image registration), the global translation
between the two frames is measured first, here by phase correlation of small grayscale copies, and
every track's prediction is moved by it before matching.
"""

from __future__ import annotations

import cv2
import numpy as np

SMALL_WIDTH = 160


def small_gray(image: np.ndarray, width: int = SMALL_WIDTH) -> tuple[np.ndarray, float]:
    """A (h, width) float32 grayscale copy of a BGR frame, windowed for phase correlation, and its scale
    (frame pixels per small pixel)."""
    h, w = image.shape[:2]
    s = w / float(width)
    hh = max(8, int(round(h / s)))
    g = cv2.cvtColor(cv2.resize(image, (width, hh), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return g.astype(np.float32), s


def estimate_shift(prev: np.ndarray, cur: np.ndarray, scale: float, min_response: float = 0.2) -> tuple[float, float]:
    """The translation (dx, dy) in frame pixels that moves ``prev``'s content to where it is in ``cur``.

    Args:
        prev, cur: (h, w) float32 from :func:`small_gray` of the same size.
        scale: frame pixels per small pixel.
        min_response: below this phase-correlation peak the estimate is not trusted and (0, 0) is returned
            (a cut, a mostly static scene with moving people, too little texture).

    Returns:
        (dx, dy) in frame pixels.
    """
    if prev.shape != cur.shape:
        return 0.0, 0.0
    win = cv2.createHanningWindow((cur.shape[1], cur.shape[0]), cv2.CV_32F)
    # cv2.phaseCorrelate multiplies its inputs by the window in place: copies keep the caller's
    # images (the tracker stores `cur` as the next call's `prev`) unwindowed.
    (dx, dy), response = cv2.phaseCorrelate(prev.copy(), cur.copy(), win)
    if not np.isfinite(response) or response < min_response:
        return 0.0, 0.0
    return float(dx) * scale, float(dy) * scale
