"""Camera motion with zoom (core/track/motion.py) on hand-made frames with a known transform, and the tracker
carrying boxes through a zoom (position and size)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from core.track import FaceTracker
from core.track.motion import CameraMotion, similarity_scale, small_to_frame, warp_boxes, warp_points

W, H = 1280, 720


def _texture(seed: int = 0, size: tuple[int, int] = (1400, 2400)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 255, (size[0] // 8, size[1] // 8, 3), np.uint8)
    big = cv2.resize(big, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)
    return cv2.GaussianBlur(big, (0, 0), 2)


def _view(scene: np.ndarray, cx: float, cy: float, ww: float) -> tuple[np.ndarray, np.ndarray]:
    """A W x H camera window of width ``ww`` scene pixels centred at (cx, cy), and its 3x3 scene -> frame map."""
    s = W / ww
    m = np.array([[s, 0, W / 2 - s * cx], [0, s, H / 2 - s * cy], [0, 0, 1.0]])
    return cv2.warpAffine(scene, m[:2], (W, H), flags=cv2.INTER_LINEAR), m


def _true_motion(ma: np.ndarray, mb: np.ndarray) -> np.ndarray:
    return (mb @ np.linalg.inv(ma))[:2]


GRID = np.array([[x, y] for x in (0.1 * W, 0.5 * W, 0.9 * W) for y in (0.1 * H, 0.5 * H, 0.9 * H)])


@pytest.mark.parametrize(
    "zoom, dx, dy",
    [(1.0, 0.0, 0.0), (1.014, 0.0, 0.0), (1.05, 0.0, 0.0), (0.97, 0.0, 0.0), (1.02, 6.0, -3.0), (1.0, 40.0, 12.0)],
)
def test_camera_motion_recovers_a_known_zoom_and_shift(zoom, dx, dy):
    scene = _texture()
    cx, cy, ww = 1200.0, 700.0, 1600.0
    a, ma = _view(scene, cx, cy, ww)
    b, mb = _view(scene, cx + dx, cy + dy, ww / zoom)
    true = _true_motion(ma, mb)
    cm = CameraMotion()
    assert cm.update(a) is None  # first frame: nothing to compare with
    m = cm.update(b)
    assert cm.last_method == "similarity"
    assert similarity_scale(m) == pytest.approx(zoom, abs=0.002)
    # every point of the frame lands within a pixel of where the known transform puts it
    err = np.abs(warp_points(m, GRID) - warp_points(true, GRID)).max()
    assert err < 1.0, err


def test_translation_only_mode_misses_the_zoom_that_the_similarity_measures():
    scene = _texture(1)
    a, ma = _view(scene, 1200.0, 700.0, 1600.0)
    b, mb = _view(scene, 1200.0, 700.0, 1600.0 / 1.03)
    true = _true_motion(ma, mb)
    shift_only = CameraMotion(zoom=False)
    shift_only.update(a)
    m0 = shift_only.update(b)
    assert similarity_scale(m0) == 1.0 and shift_only.last_method == "shift"
    # the corners move by 3% of their distance from the centre (~ 22 px): a translation cannot follow them
    assert np.abs(warp_points(m0, GRID) - warp_points(true, GRID)).max() > 15


def test_camera_motion_ignores_people_moving_in_front_of_a_still_camera():
    """A still background with a large patch moving over it: RANSAC keeps the background (identity)."""
    scene = _texture(2)
    bg, _ = _view(scene, 1200.0, 700.0, 1600.0)
    patch = _texture(3, (200, 200))
    cm = CameraMotion()
    for k in range(3):
        f = bg.copy()
        f[200:400, 300 + 30 * k : 500 + 30 * k] = patch
        m = cm.update(f)
    assert m is not None and cm.last_method == "similarity"
    assert np.abs(warp_points(m, GRID) - GRID).max() < 0.5


def test_corners_on_one_moving_face_in_front_of_a_plain_wall_are_not_the_camera():
    """A smooth gradient (no corners) and one textured face moving right: every corner lies on the face, so
    a similarity fitted to them would move every track with that face; the bunched inliers are refused."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    wall = np.stack([60 + 80 * xx / W, 90 + 60 * yy / H, 120 + 40 * (xx + yy) / (W + H)], 2).astype(np.uint8)
    face = _texture(6, (160, 160))
    cm = CameraMotion()
    for k in range(3):
        f = wall.copy()
        f[300:460, 400 + 12 * k : 560 + 12 * k] = face
        cm.update(f)
        assert cm.last_method != "similarity"


def test_a_cut_gives_no_motion():
    cm = CameraMotion()
    cm.update(_view(_texture(4), 1200.0, 700.0, 1600.0)[0])
    m = cm.update(_view(_texture(5), 1200.0, 700.0, 1600.0)[0])
    assert cm.last_method == "none"
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]])


def test_small_to_frame_maps_pixel_centres():
    """A similarity between the 160-px copies, taken to frame pixels, maps each frame pixel centre to where the
    small copies say it goes (cv2.resize's centre convention p = s (q + 0.5) - 0.5)."""
    s = 8.0
    small = np.array([[1.02, -0.01, 3.0], [0.01, 1.02, -2.0]])
    frame = small_to_frame(small, s)
    p = np.array([[0.0, 0.0], [1279.0, 719.0], [640.0, 100.0]])
    q = (p + 0.5) / s - 0.5
    expect = s * (warp_points(small, q) + 0.5) - 0.5
    np.testing.assert_allclose(warp_points(frame, p), expect, atol=1e-9)
    np.testing.assert_allclose(frame[:, :2], small[:, :2])


def test_warp_boxes_hand_computed():
    m = np.array([[2.0, 0.0, 10.0], [0.0, 2.0, -5.0]])  # zoom x2 about the origin, then a shift
    np.testing.assert_allclose(warp_boxes(m, np.array([[10, 20, 30, 60]])), [[30, 35, 70, 115]])


def test_tracker_carries_boxes_through_a_zoom_in_position_and_size():
    """Two still faces, seen twice, then the camera zooms in by 2% per frame about the frame's centre for 10
    frames while the detector does not run: with the measured similarity the carried boxes stay on the faces
    (IoU > 0.95, size within 1%); with the translation alone (the old model) they drift off (IoU < 0.6)."""
    faces = np.array([[200.0, 150.0, 260.0, 210.0], [1000.0, 500.0, 1060.0, 560.0]])
    z = 1.02
    c = np.array([W / 2, H / 2])
    zoom = np.array([[z, 0, c[0] * (1 - z)], [0, z, c[1] * (1 - z)]])

    def carried(shift_of):
        tr = FaceTracker()
        dets = np.hstack([faces, np.full((2, 1), 0.9)]).astype(np.float32)
        tr.step(dets)
        st = tr.step(dets)
        assert st.ids.tolist() == [1, 2]
        truth = faces.copy()
        for _ in range(10):
            truth = warp_boxes(zoom, truth)
            st = tr.step(None, shift_of(zoom))
        return st, truth

    from core.track.tracker import iou_matrix

    st, truth = carried(lambda m: m)
    assert st.ids.tolist() == [1, 2]
    assert np.diag(iou_matrix(st.boxes, truth)).min() > 0.95
    sizes = st.boxes[:, 2] - st.boxes[:, 0]
    np.testing.assert_allclose(sizes, truth[:, 2] - truth[:, 0], rtol=0.01)
    # the old model: the translation of the frame centre only (zero here)
    st0, _ = carried(lambda m: (float(m[0, 2] + (m[0, 0] - 1) * c[0]), float(m[1, 2] + (m[1, 1] - 1) * c[1])))
    assert np.diag(iou_matrix(st0.boxes, truth)).max() < 0.6


def test_tracker_refuses_a_malformed_camera_motion():
    tr = FaceTracker()
    with pytest.raises(ValueError, match="shift must be"):
        tr.step(None, np.eye(3))
