"""A fake face detector for tests: every white (255) blob of its input is a face.

It goes through :class:`core.detect.base.FaceDetector` (options, score threshold, NMS, ``min_size``)
like a real detector, and records the size of every image it was given, so tests can check what a
wrapper (tiles, a schedule) asked of it.
"""

from __future__ import annotations

import cv2
import numpy as np

from core.detect.base import FaceDetector, PackageSpec


class BlobDetector(FaceDetector):
    """Fake: every white (255) 8-connected blob of its input is a face, scored ``score``; records input sizes.

    Args:
        score: the score of every box.
        **opts: the detector options (``score_threshold`` 0.5, ``nms_iou``, ``input_size``, ``min_size``...).
    """

    name = "blobs"
    package = PackageSpec(module="numpy", dist="numpy", licence="BSD")
    default_options = {"score_threshold": 0.5, "nms_iou": 0.4, "input_size": None}

    def __init__(self, score: float = 0.9, **opts) -> None:
        super().__init__(**opts)
        self.score = score
        self.seen: list[tuple[int, int]] = []  # (h, w) of every image given, in order

    def _raw(self, images):
        out = []
        for im in images:
            self.seen.append(im.shape[:2])
            _, _, stats, _ = cv2.connectedComponentsWithStats((im[..., 0] == 255).astype(np.uint8), connectivity=8)
            boxes = [[x, y, x + w, y + h, self.score] for x, y, w, h, _ in stats[1:]]
            out.append(np.asarray(boxes, np.float32).reshape(-1, 5))
        return out
