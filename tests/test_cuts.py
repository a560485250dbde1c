"""Cuts to another scene: told from camera moves by the camera-motion model (core/track/motion.py), and every
track ends there (core/track/tracker.py), so a lost face's grown gate never gives its id to a new face at its
old place (the tune clips' cut loss); the people stage runs the detector on the cut frame (stream/people.py)."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from core.track import FaceTracker, TrackerParams
from core.track.motion import CameraMotion, changed_share, motion_agreement
from stream.frames import Frame
from stream.people import SourcePeople
from stream.people_config import PeopleConfig

CLASSES = ("with_mask", "without_mask")
IDENT = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _texture(seed: int, h: int = 540, w: int = 960) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (h // 8, w // 8, 3), np.uint8)
    return cv2.GaussianBlur(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), (0, 0), 2)


def _shifted(img: np.ndarray, dx: float, dy: float, zoom: float = 1.0) -> np.ndarray:
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, zoom)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def box(cx: float, cy: float, s: float, score: float = 0.9) -> list[float]:
    return [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2, score]


# ---------------------------------------------------------------- the agreement measure


def test_motion_agreement_hand_computed_cases():
    g = cv2.cvtColor(_texture(0, 90, 160), cv2.COLOR_BGR2GRAY)
    assert motion_agreement(g, g, IDENT) == pytest.approx(1.0, abs=1e-6)
    assert motion_agreement(g, 255 - g, IDENT) == pytest.approx(-1.0, abs=1e-6)  # a negative: perfectly anti-correlated
    # a shift of 7 px explained by the right motion agrees; the identity does not
    moved = np.roll(g, 7, axis=1)
    right = np.array([[1.0, 0.0, 7.0], [0.0, 1.0, 0.0]])
    assert motion_agreement(g, moved, right) == pytest.approx(1.0, abs=1e-6)
    assert motion_agreement(g, moved, IDENT) < 0.6
    # no texture: cannot be judged; a motion that leaves under a quarter of the frame covered: cannot be judged
    flat = np.full_like(g, 128)
    assert motion_agreement(flat, g, IDENT) is None and motion_agreement(g, flat, IDENT) is None
    assert motion_agreement(g, g, np.array([[1.0, 0.0, 130.0], [0.0, 1.0, 0.0]])) is None


def test_a_cut_is_told_from_pans_and_zooms():
    cm = CameraMotion()
    a = _texture(1)
    cm.update(a)
    for frame in (_shifted(a, 24.0, -6.0), _shifted(a, 0.0, 0.0, 1.03), _shifted(a, 60.0, 10.0)):
        cm.update(frame)
        assert not cm.last_cut and cm.last_agreement > 0.9, cm.last_agreement
    m = cm.update(_texture(2))  # another scene
    assert cm.last_cut and cm.last_agreement < 0.3
    np.testing.assert_allclose(m, IDENT)  # nothing fitted across a cut is a camera motion
    cm.update(_shifted(_texture(2), 5.0, 0.0))  # the new scene goes on: no cut
    assert not cm.last_cut


def test_a_stream_no_motion_explains_is_never_a_cut():
    """Independent noise frames (a dark camera's grain over a plain scene, at worst): every pair disagrees, but
    a cut is a sudden break after a pair that agreed, so none is a cut; a real cut after them is not either
    (the pair before it did not agree), the next one after a steady stretch is."""
    rng = np.random.default_rng(0)
    cm = CameraMotion()
    for _ in range(6):
        cm.update(rng.integers(0, 255, (540, 960, 3), np.uint8))
        assert not cm.last_cut
        assert cm.last_agreement is None or abs(cm.last_agreement) < 0.3
    a = _texture(8)
    for k in range(3):
        cm.update(_shifted(a, 3.0 * k, 0.0))
        assert not cm.last_cut
    cm.update(_texture(9))
    assert cm.last_cut


def test_black_frames_are_never_cuts_and_cut_ncc_none_turns_cuts_off():
    cm = CameraMotion()
    black = np.zeros((540, 960, 3), np.uint8)
    for f in (_texture(3), black, black, _texture(3)):  # lights off and on again: no texture to judge
        cm.update(f)
        assert not cm.last_cut
    off = CameraMotion(cut_ncc=None)
    off.update(_texture(4))
    off.update(_texture(5))
    assert not off.last_cut and off.last_agreement is None


# ---------------------------------------------------------------- the tracker at a cut


def _cut_clip(tr: FaceTracker, cut_flag: bool) -> list:
    """Face A at (300, 200), 40 px, seen 6 frames, then missing 4 (the detector ran, nothing there), then a cut to
    a scene whose face B sits 0.8 face sizes from A's old place: within A's grown gate."""
    steps = []
    for _ in range(6):
        steps.append(tr.step(np.array([box(300, 200, 40)], np.float32)))
    for _ in range(4):
        steps.append(tr.step(np.zeros((0, 5), np.float32)))
    kw = {"cut": True} if cut_flag else {}
    steps.append(tr.step(np.array([box(325, 220, 42)], np.float32), **kw))
    for _ in range(3):
        steps.append(tr.step(np.array([box(325, 220, 42)], np.float32)))
    return steps


def test_without_the_cut_signal_an_old_id_takes_the_new_face():
    """The loss this fixes: the lost track A matches B, so a new person inherits A's id (and label)."""
    steps = _cut_clip(FaceTracker(TrackerParams()), cut_flag=False)
    assert steps[0].confirmed == () and steps[1].confirmed == (1,)
    assert list(steps[10].ids) == [1] and steps[10].det_index[0] == 0
    assert all(not s.ended for s in steps)


def test_at_a_cut_every_track_ends_and_the_new_face_is_a_new_person():
    steps = _cut_clip(FaceTracker(TrackerParams()), cut_flag=True)
    assert steps[10].ended == {1: 5}  # A left, last seen on frame 5
    assert list(steps[10].ids) == []  # B is tentative on the cut frame (min_hits 2)...
    assert steps[11].confirmed == (2,) and list(steps[11].ids) == [2]  # ...and a new person on the next
    assert list(steps[13].ids) == [2] and all(not s.ended for s in steps[11:])


def test_a_cut_ends_tracks_in_view_and_drops_tentative_ones_even_without_detections():
    tr = FaceTracker(TrackerParams())
    for _ in range(3):
        tr.step(np.array([box(100, 100, 30), box(500, 300, 50)], np.float32))
    tr.step(np.array([box(100, 100, 30), box(500, 300, 50), box(800, 100, 30)], np.float32))  # a 3rd, tentative
    st = tr.step(None, cut=True)  # the detector did not run on the cut frame
    assert st.ended == {1: 3, 2: 3} and len(st.ids) == 0 and tr.tracks == []
    st = tr.step(np.array([box(100, 100, 30)], np.float32))
    st = tr.step(np.array([box(100, 100, 30)], np.float32))
    assert st.confirmed == (3,)  # the same place after the cut: a new person, ids never reused


# ---------------------------------------------------------------- the people stage


def test_people_stage_detects_on_the_cut_frame_and_reports_left_then_appeared():
    """The detector interval is 5, but the cut frame gets a detection run: the old person's ``left`` event comes on
    the cut frame (its frame_index: the last frame it was shown on, 7, the one before the cut; last matched on 6)
    and the new scene's face is a new person on the next frame (not 5 frames later)."""
    sp = SourcePeople("cam", CLASSES, PeopleConfig(detect_every=5, detect_every_s=10.0, camera_cuts=True))
    a, b = _texture(6), _texture(7)
    events, asked = [], []
    for i in range(14):
        img = _shifted(a, 2.0 * i, 0.0) if i < 8 else _shifted(b, 2.0 * (i - 8), 0.0)
        f = Frame("cam", i, img, time.monotonic(), pos_ms=40.0 * i)
        want = sp.wants_detection(f)
        asked.append(want)
        dets = None
        if want:
            dets = np.array([box(300 + 2 * i, 200, 60) if i < 8 else box(330 + 2 * (i - 8), 230, 60)], np.float32)
        step, due, evs = sp.track(f, dets)
        events += evs
        if any(e["event"] == "left" for e in evs):
            assert i == 8
        _, evs = sp.observe(f, step, {})
        events += evs
    # frames 0, 1 (confirming), then every 5th since the last run: 6; the cut at 8; confirming the new face at 9
    assert [i for i, w in enumerate(asked) if w] == [0, 1, 6, 8, 9]
    assert [(e["event"], e["person_id"], e["frame_index"]) for e in events] == [
        ("appeared", 1, 1), ("left", 1, 7), ("appeared", 2, 9)
    ]
    assert events[1]["last_frame"] == 6


def test_camera_cuts_false_keeps_the_old_behaviour():
    sp = SourcePeople("cam", CLASSES, PeopleConfig(detect_every=1, camera_cuts=False))
    a, b = _texture(6), _texture(7)
    ids = []
    for i in range(10):
        f = Frame("cam", i, a if i < 5 else b, time.monotonic(), pos_ms=40.0 * i)
        step, _, _ = sp.track(f, np.array([box(300, 200, 60) if i < 5 else box(320, 215, 60)], np.float32))
        ids.append(list(step.ids))
    assert ids[4] == [1] and ids[9] == [1]


def test_one_object_jumping_in_front_of_a_plain_wall_is_not_a_cut():
    """The only texture is a bright square that jumps across the frame (and a changing frame number): the
    correlation sees no agreement, but a third of the frame changed, not most of it. A real cut on the same
    plain-wall setup (the wall's grey changes too) is one."""
    def fr(x: int, wall: int = 40) -> np.ndarray:
        im = np.full((72, 96, 3), wall, np.uint8)
        cv2.rectangle(im, (x, 20), (x + 30, 60), (230, 230, 230), -1)
        return im

    cm = CameraMotion()
    for x in (0, 7, 14, 21, 60, 4, 11):
        cm.update(fr(x))
        assert not cm.last_cut
    g0 = cv2.cvtColor(fr(11), cv2.COLOR_BGR2GRAY)
    g1 = cv2.cvtColor(fr(60), cv2.COLOR_BGR2GRAY)
    assert changed_share(g0, g1, IDENT) == pytest.approx(2 * 31 * 41 / (96 * 72), abs=0.03)  # both places of the square
    cm.update(_texture(10, 72, 96))
    assert cm.last_cut
