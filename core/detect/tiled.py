"""Sliced inference around any face detector: the full frame plus overlapping tiles, merged.

    det = create_detector("retinaface", tiles=2, overlap=0.25)   # a TiledDetector around RetinaFace
    faces = det.detect([frame_bgr])                              # same contract as every detector

Each tile is cropped from the frame and fed to the detector at its ``input_size`` (so a tile of a third of
the frame is seen ~3x larger than in the full-frame pass: small faces grow past the detector's smallest
anchor); boxes are shifted back to frame pixels and merged with the full-frame pass
(:func:`core.detect.tiling.merge_detections`). The arithmetic lives in :mod:`core.detect.tiling`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from core.detect.base import FaceDetector
from core.detect.geometry import EMPTY, filter_detections
from core.detect.tiling import MATCH_METRICS, MERGE_METHODS, merge_detections, plan_tiles, shift_detections


@dataclass(frozen=True)
class TilingOptions:
    """How a frame is sliced and the tiles' boxes merged.

    Attributes:
        tiles: tiles along the frame's longer side (the shorter side gets proportionally fewer, at least 1).
        overlap: fraction of a tile shared with its neighbour, in [0, 0.9]; a face narrower than the
            overlap is seen whole by at least one tile.
        tile_input_size: longer side each tile is resized to for the network (None: the detector's
            ``input_size``).
        full_frame: also run the detector on the whole frame (finds the large faces tiles cut apart).
        merge: ``nmm`` (merge a group of boxes into their enclosing box) or ``nms`` (keep the best).
        merge_metric: ``ios`` (intersection over the smaller box) or ``iou``.
        merge_threshold: boxes overlapping at least this much (``merge_metric``) are the same face.
    """

    tiles: int = 2
    overlap: float = 0.25
    tile_input_size: int | None = None
    full_frame: bool = True
    merge: str = "nmm"
    merge_metric: str = "ios"
    merge_threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.tiles <= 16:
            raise ValueError(f"tiles must be in [1, 16], but got {self.tiles}")
        if not 0.0 <= self.overlap <= 0.9:
            raise ValueError(f"overlap must be in [0, 0.9], but got {self.overlap}")
        if self.tile_input_size is not None and not 32 <= self.tile_input_size <= 4096:
            raise ValueError(f"tile_input_size must be None or in [32, 4096], but got {self.tile_input_size}")
        if self.merge not in MERGE_METHODS:
            raise ValueError(f"merge must be one of {', '.join(MERGE_METHODS)}, but got {self.merge!r}")
        if self.merge_metric not in MATCH_METRICS:
            raise ValueError(f"merge_metric must be one of {', '.join(MATCH_METRICS)}, but got {self.merge_metric!r}")
        if not 0.0 < self.merge_threshold <= 1.0:
            raise ValueError(f"merge_threshold must be in (0, 1], but got {self.merge_threshold}")


TILING_KEYS = frozenset(f.name for f in dataclasses.fields(TilingOptions))


class TiledDetector(FaceDetector):
    """The full frame and its tiles through one base detector (or a second instance for the tiles).

    Args:
        base: the detector for the full-frame pass; its score threshold, max_detections and min_size
            also apply to the merged result.
        tiling: how to slice and merge.
        tile_detector: the detector run on the tiles (None: ``base``), e.g. the same model at another
            ``input_size``.
    """

    def __init__(self, base: FaceDetector, tiling: TilingOptions, tile_detector: FaceDetector | None = None) -> None:
        self.base = base
        self.tile_detector = tile_detector or base
        self.tiling = tiling
        self.options = base.options
        self.name = f"{base.name}+tiles"
        self.package = base.package

    @property
    def session(self):
        """The base detector's onnxruntime session (for reports of the provider), when it has one."""
        return getattr(self.base, "session", None)

    def detect(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Faces in each image: full frame + tiles, merged; same contract as :meth:`FaceDetector.detect`."""
        images = list(images)
        for i, im in enumerate(images):
            if not (isinstance(im, np.ndarray) and im.ndim == 3 and im.shape[2] == 3 and im.dtype == np.uint8):
                got = f"{type(im).__name__} {getattr(im, 'shape', '')} {getattr(im, 'dtype', '')}"
                raise ValueError(f"images[{i}] must be an (H, W, 3) uint8 BGR array, but got {got}")
        if not images:
            return []
        t = self.tiling
        per_image: list[list[np.ndarray]] = [[] for _ in images]
        if t.full_frame:
            for parts, d in zip(per_image, self.base.detect(images)):
                parts.append(d)
        crops, owners, offsets = [], [], []
        for i, im in enumerate(images):
            plan = plan_tiles(im.shape[:2], t.tiles, t.overlap)
            if len(plan) == 1 and t.full_frame and self.tile_detector is self.base:
                continue  # one tile = the full frame already run
            for x1, y1, x2, y2 in plan:
                crops.append(np.ascontiguousarray(im[y1:y2, x1:x2]))
                owners.append(i)
                offsets.append((int(x1), int(y1)))
        if crops:
            for i, off, d in zip(owners, offsets, self.tile_detector.detect(crops)):
                per_image[i].append(shift_detections(d, off))
        o = self.options
        out = []
        for parts in per_image:
            d = np.concatenate(parts) if parts else EMPTY.copy()
            d = merge_detections(d, t.merge, t.merge_metric, t.merge_threshold)
            out.append(filter_detections(d, o.score_threshold, 1.0, o.max_detections, o.min_size))
        return out

    def _raw(self, images: list[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover - detect() is overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"TiledDetector(base={self.base!r}, tiling={self.tiling})"


def pass_regions(detector: FaceDetector, frame_hw: tuple[int, int]) -> np.ndarray:
    """The pieces a full-cost pass can be cut into (one per frame, round-robin: ``core.track.crowd_schedule``).

    Args:
        detector: a :class:`TiledDetector` (its tiles; its full-frame pass is left out, the cheap
            detector is the full-frame pass then) or any other detector (one piece: the whole frame).
        frame_hw: (height, width) of the frames.

    Returns:
        (P, 4) int64 [x1, y1, x2, y2] (x2, y2 exclusive), P >= 1.
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if isinstance(detector, TiledDetector):
        return plan_tiles((h, w), detector.tiling.tiles, detector.tiling.overlap)
    return np.array([[0, 0, w, h]], np.int64)


def detect_regions(detector: FaceDetector, image: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Faces in some pieces of one frame (:func:`pass_regions`), in frame pixels, merged like the detector's own.

    Args:
        detector: as in :func:`pass_regions`; a tiled detector's tiles go through its ``tile_detector``.
        image: (H, W, 3) uint8 BGR frame.
        regions: (R, 4) pieces [x1, y1, x2, y2] to look at, R >= 1 (one batch).

    Returns:
        (n, 5) float32 [x1, y1, x2, y2, score], sorted by score.
    """
    regions = np.asarray(regions, np.int64).reshape(-1, 4)
    net = detector.tile_detector if isinstance(detector, TiledDetector) else detector
    crops = [np.ascontiguousarray(image[y1:y2, x1:x2]) for x1, y1, x2, y2 in regions]
    parts = [shift_detections(d, (int(r[0]), int(r[1]))) for r, d in zip(regions, net.detect(crops))]
    d = np.concatenate(parts) if parts else EMPTY.copy()
    if isinstance(detector, TiledDetector):
        t, o = detector.tiling, detector.options
        d = merge_detections(d, t.merge, t.merge_metric, t.merge_threshold)
        d = filter_detections(d, o.score_threshold, 1.0, o.max_detections, o.min_size)
    return d[np.argsort(-d[:, 4], kind="stable")] if len(d) else d
