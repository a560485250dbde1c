"""Sliced detection (core.detect.tiling, core.detect.tiled): tile plans, the shift back to frame pixels and
the merge of duplicates across tile borders on hand-made boxes; the wrapper around a fake detector that sees
only what its input shows; and the real RetinaFace finding a face too small for its full-frame pass."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.detect import DEFAULT, TiledDetector, TilingOptions, create_detector, detector_class
from core.detect.tiling import box_ios, merge_detections, plan_tiles, shift_detections, tile_grid
from tests._detect_fakes import BlobDetector

DATA = Path(__file__).parent / "data"


def close(a, b) -> bool:
    """Arrays equal up to float32 rounding (shapes must match)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return a.shape == b.shape and bool(np.allclose(a, b, atol=1e-5))


FACE = np.array([80, 45, 137, 114], dtype=np.float64)  # the face in tests/data/astronaut_face.png


# ---------------------------------------------------------------- tile plans


@pytest.mark.parametrize(
    "hw, tiles, expected",
    [
        ((300, 400), 2, (2, 2)),  # round(2 * 300 / 400) = round(1.5) = 2
        ((1080, 1920), 3, (3, 2)),  # round(1.69) = 2 rows
        ((1000, 300), 3, (1, 3)),  # portrait: the long side is the height
        ((50, 400), 2, (2, 1)),  # at least one tile on the short side
        ((300, 400), 1, (1, 1)),
    ],
)
def test_tile_grid(hw, tiles, expected):
    assert tile_grid(hw, tiles) == expected


def test_plan_tiles_hand_computed():
    # width 200, 2 tiles, overlap 0.25: tile = 200 / 1.75 = 114.29, step = 85.71 -> [0, 115) and [85, 200)
    assert plan_tiles((100, 200), 2, 0.25).tolist() == [[0, 0, 115, 100], [85, 0, 200, 100]]
    # 90 x 90, 3 x 3 without overlap: 30 px tiles, row by row
    t = plan_tiles((90, 90), 3, 0.0)
    assert t.shape == (9, 4)
    assert t[:3].tolist() == [[0, 0, 30, 30], [30, 0, 60, 30], [60, 0, 90, 30]]
    assert t[-1].tolist() == [60, 60, 90, 90]
    # one tile is the frame
    assert plan_tiles((37, 51), 1, 0.5).tolist() == [[0, 0, 51, 37]]


@pytest.mark.parametrize("hw", [(300, 400), (366, 512), (1080, 1920), (101, 77)])
@pytest.mark.parametrize("tiles, overlap", [(2, 0.25), (3, 0.2), (4, 0.5)])
def test_tiles_cover_the_frame_with_the_overlap(hw, tiles, overlap):
    t = plan_tiles(hw, tiles, overlap)
    covered = np.zeros(hw, bool)
    for x1, y1, x2, y2 in t:
        assert 0 <= x1 < x2 <= hw[1] and 0 <= y1 < y2 <= hw[0]
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    cols, rows = tile_grid(hw, tiles)
    xs = sorted({(a, b) for a, _, b, _ in t.tolist()})
    for (a0, b0), (a1, b1) in zip(xs, xs[1:]):  # neighbours share at least the overlap (rounded outward)
        assert b0 - a1 >= int(overlap * (b0 - a0)) - 1
    assert len(t) == cols * rows


@pytest.mark.parametrize(
    "kwargs, match", [({"tiles": 0, "overlap": 0.2}, "tiles"), ({"tiles": 2, "overlap": 0.95}, "overlap")]
)
def test_plan_tiles_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        plan_tiles((100, 100), **kwargs)


# ---------------------------------------------------------------- shift and merge


def test_shift_detections_back_to_frame():
    d = np.array([[1, 2, 3, 4, 0.9], [0, 0, 10, 5, 0.5]], np.float32)
    out = shift_detections(d, (85, 20))
    assert close(out, [[86, 22, 88, 24, 0.9], [85, 20, 95, 25, 0.5]])
    assert d[0, 0] == 1  # input untouched
    assert shift_detections(np.zeros((0, 5)), (3, 4)).shape == (0, 5)


def test_box_ios_hand_computed():
    a = np.array([[0, 0, 10, 10]], float)
    b = np.array([[5, 0, 25, 10], [0, 0, 4, 4], [20, 20, 30, 30]], float)
    # overlaps 50, 16, 0; smaller areas 100, 16, 100
    assert close(box_ios(a, b)[0], [0.5, 1.0, 0.0])


def _border_case(cut_score: float) -> np.ndarray:
    """A face at frame x in [90, 120) straddling the border of the left tile [0, 115): the left tile sees
    its left part, the right tile (starting at x = 85) sees it whole; one more face far away."""
    left_tile = np.array([[90, 40, 115, 70, cut_score], [10, 10, 20, 20, 0.7]], np.float32)  # tile at (0, 0)
    right_tile = np.array([[5, 40, 35, 70, 0.9]], np.float32)  # tile at (85, 0): frame [90, 40, 120, 70]
    return np.concatenate([shift_detections(left_tile, (0, 0)), shift_detections(right_tile, (85, 0))])


@pytest.mark.parametrize("cut_score", [0.8, 0.95])
def test_nmm_merges_a_face_cut_by_a_tile_border(cut_score):
    out = merge_detections(_border_case(cut_score), "nmm", "ios", 0.5)
    # IoS of the cut part with the whole face = 750 / 750 = 1: one face, its full extent, the best score
    assert close(out, [[90, 40, 120, 70, max(cut_score, 0.9)], [10, 10, 20, 20, 0.7]])


def test_nms_keeps_the_cut_box_when_it_scores_higher():
    out = merge_detections(_border_case(0.95), "nms", "iou", 0.5)  # IoU = 750 / 900 = 0.83
    assert close(out, [[90, 40, 115, 70, 0.95], [10, 10, 20, 20, 0.7]])


def test_merge_keeps_neighbouring_faces_apart():
    d = np.array([[0, 0, 10, 10, 0.9], [9, 0, 19, 10, 0.8], [0, 0, 10, 10, 0.6]], np.float32)
    out = merge_detections(d, "nmm", "ios", 0.5)  # IoS of the neighbours = 10 / 100
    assert close(out, [[0, 0, 10, 10, 0.9], [9, 0, 19, 10, 0.8]])
    assert merge_detections(np.zeros((0, 5)), "nmm").shape == (0, 5)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"method": "wbf"}, "merge method"), ({"metric": "giou"}, "match metric"), ({"threshold": 0.0}, "threshold")],
)
def test_merge_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        merge_detections(np.zeros((1, 5)), **kwargs)


# ---------------------------------------------------------------- the wrapper


def test_tiled_detector_one_box_per_blob_in_frame_pixels():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[40:70, 90:120] = 255  # straddles the left tile's right edge (115)
    frame[10:20, 150:160] = 255  # inside the right tile only
    base = BlobDetector()
    det = TiledDetector(base, TilingOptions(tiles=2, overlap=0.25))
    (out,) = det.detect([frame])
    out = out[np.argsort(out[:, 0])]  # equal scores: order by x
    assert close(out, [[90, 40, 120, 70, 0.9], [150, 10, 160, 20, 0.9]])
    assert base.seen == [(100, 200), (100, 115), (100, 115)]  # the frame, then both tiles (one batch)
    # tiles only: the cut part from the left tile merges into the whole blob from the right tile
    (tiles_only,) = TiledDetector(BlobDetector(), TilingOptions(tiles=2, overlap=0.25, full_frame=False)).detect(
        [frame]
    )
    assert close(tiles_only[np.argsort(tiles_only[:, 0])], out)
    assert det.detect([]) == []
    with pytest.raises(ValueError, match=r"images\[0\]"):
        det.detect([np.zeros((4, 4), np.uint8)])


def test_tiling_options_validate():
    with pytest.raises(ValueError, match="tiles"):
        TilingOptions(tiles=0)
    with pytest.raises(ValueError, match="merge_metric"):
        TilingOptions(merge_metric="giou")
    with pytest.raises(ValueError, match="tile_input_size"):
        TilingOptions(tile_input_size=8)


# ---------------------------------------------------------------- the real detector

needs_default = pytest.mark.skipif(
    importlib.util.find_spec(detector_class(DEFAULT).package.module) is None,
    reason=f"{detector_class(DEFAULT).package.dist} not installed",
)


@needs_default
def test_create_detector_with_tiling_options():
    det = create_detector(DEFAULT, tiles=3, overlap=0.2, tile_input_size=320, threads=1)
    assert isinstance(det, TiledDetector) and det.tiling.tiles == 3
    assert det.base.options.input_size == 640 and det.tile_detector.options.input_size == 320
    assert not isinstance(create_detector(DEFAULT, threads=1), TiledDetector)
    with pytest.raises(ValueError, match="overlap"):
        create_detector(DEFAULT, tiles=2, overlap=2.0)


@needs_default
@pytest.mark.timeout(60)
def test_tiles_find_a_face_too_small_for_the_full_frame():
    crop = cv2.imread(str(DATA / "astronaut_face.png"), cv2.IMREAD_COLOR)
    small = cv2.resize(crop, (30, 30), interpolation=cv2.INTER_AREA)  # the face becomes ~9 x 10 px
    frame = np.full((600, 800, 3), 127, np.uint8)
    frame[300:330, 500:530] = small
    truth = (FACE * 30 / 200 + [500, 300, 500, 300])[None]
    from core.detect.geometry import box_iou

    plain = create_detector(DEFAULT, threads=1).detect([frame])[0]
    tiled = create_detector(DEFAULT, threads=1, tiles=3, overlap=0.25).detect([frame])[0]
    hit = lambda d: len(d) > 0 and box_iou(d, truth).max() >= 0.3  # noqa: E731
    assert not hit(plain), f"the full-frame pass was expected to miss the small face, found {plain}"
    assert hit(tiled), f"tiles missed the face at {truth[0]}: {tiled}"


# ---------------------------------------------------------------- the config route (worker.detector_options)


@needs_default
def test_detector_options_from_config_and_errors_name_the_key():
    from stream.config import load_config
    from stream.errors import UserError
    from stream.pipeline import create_detector as pipeline_detector

    cfg = load_config(None, {"worker": {"mode": "faces", "detector_options": {"tiles": 2, "overlap": 0.3}}})
    det = pipeline_detector(cfg.worker.detector, cfg.worker.detector_options)
    assert isinstance(det, TiledDetector) and det.tiling.overlap == 0.3
    with pytest.raises(UserError, match=r"worker\.detector_options .*unknown detector option 'tilez'"):
        pipeline_detector(None, {"tilez": 2})
    with pytest.raises(UserError, match=r"worker\.detector_options .*overlap"):
        pipeline_detector(None, {"tiles": 2, "overlap": -1})


@needs_default
def test_crowd_preset_builds_its_detector():
    from stream.config import load_config
    from stream.pipeline import create_detector as pipeline_detector

    cfg = load_config("crowd")
    assert cfg.worker.mode == "faces" and cfg.worker.max_faces >= 100
    det = pipeline_detector(cfg.worker.detector, cfg.worker.detector_options)
    for key, value in cfg.worker.detector_options.items():  # every preset option reached the detector
        where = det.tiling if isinstance(det, TiledDetector) and hasattr(det.tiling, key) else det.options
        assert getattr(where, key) == value, key
