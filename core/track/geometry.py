"""Box helpers for the people stage."""

from __future__ import annotations

import numpy as np


def expand_boxes(xyxy: np.ndarray, margin: float, frame_size: tuple[int, int] | None = None) -> np.ndarray:
    """Boxes enlarged by ``margin`` x their width / height on every side, clipped to the frame.

    Args:
        xyxy: (N, 4) x1, y1, x2, y2.
        margin: fraction of the box size added per side (faces mode: ``worker.face_margin``, the crop
            the classifier saw).
        frame_size: (H, W) to clip to, or None.

    Returns:
        (N, 4) float32.
    """
    b = np.asarray(xyxy, np.float32).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    out = np.stack([b[:, 0] - margin * w, b[:, 1] - margin * h, b[:, 2] + margin * w, b[:, 3] + margin * h], 1)
    if frame_size is not None:
        fh, fw = frame_size
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, fw)
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, fh)
    return out.astype(np.float32)
