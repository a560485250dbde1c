"""Training images cut exactly as the faces-mode worker cuts them (issue 18: the crowd preset's classifier).

The worker (``stream.processor.Processor``) crops each detector box enlarged by ``face_margin`` per side
(:func:`core.frame_boxes.crop_rects`: rounded outwards, clipped to the frame), shrinks crops of more than
4 S^2 pixels as uint8 first (:func:`core.frame_resize.shrink_bgr_uint8`, its CPU fast path) and stretches the
crop to S x S (antialiased bilinear, ``core.preprocess.bgr_to_input``), without keeping its aspect ratio.
:func:`worker_input_image` does the same and stores the result as an (3, S, S) float32 RGB image in [0, 1]: the worker's
model input before ``core.preprocess.normalize``, exactly. It is deliberately not rounded to uint8: on the
shipped model, rounding the upsampled crop of a small face (|delta| <= 0.5/255 per pixel, but a staircase
pattern over the smooth upsampled image) flipped 7 of the crowd preset's 379 found val faces.
"""

from __future__ import annotations

import numpy as np
import torch

from core.frame_boxes import crop_rects
from core.frame_resize import shrink_bgr_uint8
from core.preprocess import bgr_to_input


def worker_rect(box, frame_size: tuple[int, int], margin: float) -> tuple[int, int, int, int] | None:
    """The worker's crop rectangle (x1, y1, x2, y2), integer pixels, for one detector ``box`` (x1, y1, x2, y2)
    in a frame of ``frame_size`` (H, W); None when it is dropped (under 2 px on a side after clipping)."""
    rects, _ = crop_rects(np.asarray(box, np.float32).reshape(1, 4), frame_size, margin)
    return None if len(rects) == 0 else tuple(int(v) for v in rects[0])


def worker_input_image(image: np.ndarray, box, margin: float, size: int) -> np.ndarray | None:
    """The worker's classifier input for ``box`` in ``image``, before normalisation.

    Args:
        image: (H, W, 3) uint8 BGR frame.
        box: detector box (x1, y1, x2, y2) in frame pixels.
        margin: the worker's ``face_margin`` (share of the box's width / height added per side).
        size: the model's input side S.

    Returns:
        (3, S, S) float32 RGB in [0, 1] (the crop stretched to S x S as the worker does), or None when the
        worker would drop the box.
    """
    r = worker_rect(box, image.shape[:2], margin)
    if r is None:
        return None
    x1, y1, x2, y2 = r
    t = torch.from_numpy(np.ascontiguousarray(image[y1:y2, x1:x2]))[None]
    if t.shape[1] * t.shape[2] > 4 * size * size:  # the worker's CPU fast path (stream.processor.shrink_large)
        t = shrink_bgr_uint8(t, (size, size))
    return bgr_to_input(t, size, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))[0].numpy()  # (3, S, S) RGB in [0, 1]
