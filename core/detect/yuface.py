"""libfacedetection (YuNet family) from the ``yuface`` wheel (BSD-3-Clause), a compiled CPU library.

Shiqi Yu et al., libfacedetection (https://github.com/ShiqiYu/libfacedetection). The wheel's
extension takes one (H, W, 3) uint8 BGR image and returns int16 rows
[score*100, x, y, w, h, 10 landmark coords, pad]; it runs its own NMS. CPU only, no batching.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.detect.base import FaceDetector, PackageSpec, import_package
from core.detect.geometry import place, plan_letterbox, undo_letterbox


def rows_to_dets(rows: np.ndarray) -> np.ndarray:
    """libfacedetection rows (n, >=5) [score*100, x, y, w, h, ...] -> (n, 5) xyxy+score in [0, 1]."""
    r = np.asarray(rows, dtype=np.float32).reshape(-1, rows.shape[-1] if rows.ndim == 2 else 16)
    return np.stack([r[:, 1], r[:, 2], r[:, 1] + r[:, 3], r[:, 2] + r[:, 4], r[:, 0] / 100.0], axis=1)


class YuFaceDetector(FaceDetector):
    """libfacedetection CNN (0.3 MB library, BSD): fastest on CPU; ignores ``device`` and ``threads``."""

    name = "yuface"
    package = PackageSpec(module="yuface", dist="yuface==2023.5.1", licence="BSD-3-Clause (libfacedetection)")
    default_options: ClassVar[dict] = {"score_threshold": 0.5, "nms_iou": 0.4, "input_size": 640}

    def __init__(self, **opts) -> None:
        super().__init__(**opts)
        self._detect = import_package(self.name, self.package, "yuface.yuface").detect

    def _raw(self, images: list[np.ndarray]) -> list[np.ndarray]:
        out = []
        for im in images:
            lb = plan_letterbox(im.shape[:2], self.options.input_size)
            canvas = place(im, lb, lb.resized_wh)
            out.append(undo_letterbox(rows_to_dets(self._detect(np.ascontiguousarray(canvas))), lb))
        return out
