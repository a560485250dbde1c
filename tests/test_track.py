"""The face tracker on hand-made trajectories, the vote, and the re-classification schedule."""

from __future__ import annotations

import numpy as np
import pytest

from core.track import (
    UNDECIDED,
    FaceTracker,
    PersonVote,
    ScheduleParams,
    TrackerParams,
    VoteParams,
    due_for_classification,
)
from core.track.tracker import association_cost, iou_matrix


def box(cx: float, cy: float, s: float, score: float = 0.9) -> list[float]:
    return [cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2, score]


def run(tracker: FaceTracker, frames: list[list[list[float]] | None]):
    """Step through frames; returns per frame {det index: id} for matched detections, and the steps."""
    out, steps = [], []
    for dets in frames:
        st = tracker.step(None if dets is None else np.array(dets, np.float32).reshape(-1, 5))
        steps.append(st)
        out.append({int(k): int(i) for i, k in zip(st.ids, st.det_index) if k >= 0})
    return out, steps


# ---------------------------------------------------------------- association


def test_iou_matrix_hand_computed():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    np.testing.assert_allclose(iou_matrix(a, b), [[50 / 150, 0.0, 1.0]])


def test_cost_matches_small_faces_without_overlap_and_gates_far_ones():
    t = np.array([[0, 0, 8, 8]], np.float32)
    near = [10, 0, 18, 8]  # IoU 0, centre 10 px = 1.25 face sizes away
    far = [40, 0, 48, 8]  # 5 face sizes away
    big = [8, 0, 40, 32]  # 4x the size
    c = association_cost(t, np.array([near, far, big], np.float32), np.array([1.5]), 2.0)
    assert np.isfinite(c[0, 0]) and not np.isfinite(c[0, 1]) and not np.isfinite(c[0, 2])
    np.testing.assert_allclose(c[0, 0], 0.5 * 1.0 + 0.5 * (1.25 / 1.5), rtol=1e-6)


# ---------------------------------------------------------------- trajectories


def test_two_faces_get_stable_ids_and_confirm_after_min_hits():
    tr = FaceTracker(TrackerParams(min_hits=2))
    frames = [[box(100 + 3 * i, 100, 30), box(400 - 3 * i, 120, 30)] for i in range(10)]
    ids, steps = run(tr, frames)
    assert ids[0] == {}  # tentative on the first frame
    assert steps[1].confirmed == (1, 2)
    for m in ids[1:]:
        assert m == {0: 1, 1: 2}


def test_crossing_paths_keep_their_ids():
    """Two faces of the same size walk through each other (they overlap for a few frames)."""
    tr = FaceTracker()
    frames = []
    for i in range(30):
        a = box(100 + 10 * i, 200, 40)  # left -> right
        b = box(390 - 10 * i, 204, 40)  # right -> left, nearly the same height
        frames.append([b, a] if i % 2 else [a, b])  # detector order changes, must not matter
    ids, _ = run(tr, frames)
    first = ids[1]
    a_id = first[1] if 1 % 2 else first[0]
    b_id = first[0] if 1 % 2 else first[1]
    for i in range(1, 30):
        m = ids[i]
        got_a = m[1] if i % 2 else m[0]
        got_b = m[0] if i % 2 else m[1]
        assert (got_a, got_b) == (a_id, b_id), f"frame {i}: ids swapped or lost"


def test_face_lost_for_a_few_frames_is_found_again_with_its_id():
    tr = FaceTracker(TrackerParams(max_lost_frames=10))
    frames: list = [[box(100 + 4 * i, 100, 30)] for i in range(8)]
    frames += [[] for _ in range(6)]  # occluded: detector runs, finds nothing
    frames += [[box(100 + 4 * i, 100, 30)] for i in range(14, 20)]  # back where it would be
    ids, steps = run(tr, frames)
    assert ids[5] == {0: 1}
    assert all(len(s.ids) == 0 for s in steps[8:14])  # a lost track is not shown
    assert all(m == {0: 1} for m in ids[14:])
    assert all(not s.ended for s in steps)
    assert tr.next_id == 2  # no second person was made


def test_face_hidden_by_a_sweeping_board_is_found_again_where_it_was_last_seen():
    """A board slides over a still face from the right: the detector first sees a shrinking left part of it
    (the filter learns a leftward drift and a shrinking size), then nothing for 15 frames, then the whole face
    where it always was. The lost track keeps its size and is found again at its last observed box."""
    tr = FaceTracker()
    frames: list = [[box(200, 100, 40)] for _ in range(10)]
    frames += [[[180, 80, 180 + w, 120, 0.9]] for w in (32, 24, 16)]  # x1 stays, the right side is hidden
    frames += [[] for _ in range(15)]
    frames += [[box(200, 100, 40)] for _ in range(5)]
    ids, steps = run(tr, frames)
    assert ids[9] == {0: 1}
    assert all(m == {0: 1} for m in ids[-5:])
    assert tr.next_id == 2  # the returning face made no second person
    lost = [t for t in tr.tracks if t.public_id == 1]
    assert len(lost) == 1


def test_lost_track_keeps_its_size():
    """Without a detection a lost track's box keeps the size it had (its size velocity is not extrapolated,
    as ByteTrack keeps a lost track's height): a shrinking partial view must not shrink it to nothing."""
    tr = FaceTracker(TrackerParams(max_lost_frames=50))
    frames: list = [[box(200, 100, 40)] for _ in range(6)] + [[[180, 80, 180 + w, 120, 0.9]] for w in (30, 20)]
    frames += [[] for _ in range(30)]
    run(tr, frames)
    (t,) = tr.tracks
    w, h = t.box[2] - t.box[0], t.box[3] - t.box[1]
    assert w > 10 and h > 30


def test_a_track_in_view_keeps_its_face_against_a_lost_track_with_a_wide_gate():
    """Matching cascade: a face that a track in view explains is never given to a track lost long ago whose
    grown gate also reaches it, even when the lost track's box fits it better."""
    tr = FaceTracker(TrackerParams(max_lost_frames=60, gate=1.5))
    # A: in view, moving right 4 px/frame; B: seen at x=300 for 6 frames, then lost for 25 frames
    frames: list = [[box(100 + 4 * i, 100, 40), box(300, 100, 40)] for i in range(6)]
    frames += [[box(100 + 4 * i, 100, 40)] for i in range(6, 31)]
    # A's next detection sits 1.2 face sizes ahead of A's prediction (a detector jitter) and at B's old place
    frames += [[box(100 + 4 * 31 + 48, 100, 40)]]
    ids, _ = run(tr, frames)
    a = ids[5][0]
    assert ids[-1] == {0: a}


def test_track_ends_after_max_lost_frames_and_a_returning_face_is_new():
    tr = FaceTracker(TrackerParams(max_lost_frames=3))
    frames: list = [[box(100, 100, 30)] for _ in range(4)] + [[] for _ in range(4)] + [[box(100, 100, 30)]] * 3
    ids, steps = run(tr, frames)
    ended = [s.ended for s in steps if s.ended]
    assert ended == [{1: 3}]  # ended once, last matched on frame 3
    assert ids[-1] == {0: 2}


def test_new_face_entering_gets_a_new_id_without_disturbing_others():
    tr = FaceTracker()
    frames = [[box(100 + 2 * i, 100, 30)] for i in range(5)]
    frames += [[box(100 + 2 * i, 100, 30), box(600, 300, 50)] for i in range(5, 10)]
    ids, steps = run(tr, frames)
    assert ids[4] == {0: 1}
    assert steps[6].confirmed == (2,)
    assert ids[9] == {0: 1, 1: 2}


def test_tiny_fast_faces_with_no_overlap_between_frames():
    """8-px faces moving 11 px per frame (IoU 0 every frame), two of them 60 px apart."""
    tr = FaceTracker()
    frames = [[box(50 + 11 * i, 100, 8), box(50 + 11 * i, 160, 8)] for i in range(20)]
    for k in range(1, 20):
        a, b = np.array(frames[k - 1][0][:4]), np.array(frames[k][0][:4])
        assert iou_matrix(a[None], b[None])[0, 0] == 0.0
    ids, _ = run(tr, frames)
    assert all(m == {0: 1, 1: 2} for m in ids[1:])


def test_iou_only_would_fail_on_tiny_fast_faces():
    """Control: the same trajectory tracked with a near-zero distance gate (overlap only) breaks up."""
    tr = FaceTracker(TrackerParams(gate=1e-3, gate_new=1e-3))
    frames = [[box(50 + 11 * i, 100, 8)] for i in range(10)]
    run(tr, frames)
    assert tr.next_id == 1  # never confirmed: every frame looked like a new face


def test_carried_between_detector_runs_and_prediction_follows_motion():
    tr = FaceTracker()
    frames: list = []
    for i in range(30):
        frames.append([box(100 + 5 * i, 100, 30)] if i % 5 == 0 else None)
    _, steps = run(tr, frames)
    for i in range(11, 30):  # confirmed at frame 5; velocity learnt by frame 10
        st = steps[i]
        assert list(st.ids) == [1]
        cx = (st.boxes[0, 0] + st.boxes[0, 2]) / 2
        assert abs(cx - (100 + 5 * i)) < 3.0, f"frame {i}: predicted centre {cx:.1f} vs {100 + 5 * i}"
        assert (st.det_index[0] >= 0) == (i % 5 == 0)


def test_weak_detections_keep_a_track_but_never_start_one():
    tr = FaceTracker()
    frames = [[box(100, 100, 30, 0.9)] for _ in range(3)] + [[box(100, 100, 30, 0.45)] for _ in range(3)]
    frames += [[box(400, 100, 30, 0.45)] for _ in range(3)]  # a weak box elsewhere: no new person
    ids, steps = run(tr, frames)
    assert all(m == {0: 1} for m in ids[3:6])
    assert tr.next_id == 2


def test_boxes_under_the_low_score_are_ignored():
    """Under ``low_score`` (0.4 by default) a box does not even keep a track in view: on the tune clips the
    boxes of 0.1-0.4 kept tracks alive on things that are not faces (false boxes 929 -> 759 on 12 clips)."""
    assert TrackerParams().low_score == 0.4
    tr = FaceTracker()
    frames = [[box(100, 100, 30, 0.9)] for _ in range(3)] + [[box(100, 100, 30, 0.3)] for _ in range(2)]
    ids, steps = run(tr, frames)
    assert ids[3] == {} and ids[4] == {}
    assert len(steps[4].ids) == 0  # not in view: lost, not carried on the 0.3 box


def test_a_lost_track_comes_back_only_on_a_confident_detection():
    """As in ByteTrack, weak boxes only keep a track in view going: a lost track is not revived by them (weak
    boxes are mostly not faces, and a lost track's grown gate would keep it alive on them forever)."""
    tr = FaceTracker(TrackerParams(max_lost_frames=50))
    frames: list = [[box(100, 100, 30, 0.9)] for _ in range(3)] + [[] for _ in range(5)]
    frames += [[box(130, 100, 30, 0.45)] for _ in range(3)]  # weak, within the grown gate
    frames += [[box(130, 100, 30, 0.9)]]  # confident: the lost face is found again
    ids, _ = run(tr, frames)
    assert all(m == {} for m in ids[8:11])
    assert ids[11] == {0: 1}


def test_finish_ends_every_confirmed_track():
    tr = FaceTracker()
    run(tr, [[box(100, 100, 30), box(300, 100, 30)]] * 3)
    assert tr.finish() == {1: 2, 2: 2}
    assert tr.finish() == {}


@pytest.mark.parametrize(
    "kw",
    [{"low_score": 0.6, "high_score": 0.5}, {"gate": 0}, {"max_size_ratio": 0.5}, {"min_hits": 0}, {"max_gate_growth": 0.9}],
)
def test_bad_tracker_params_are_refused(kw):
    with pytest.raises(ValueError):
        TrackerParams(**kw)


# ---------------------------------------------------------------- the vote

NAMES = ("with_mask", "without_mask")
MASK = np.array([0.97, 0.03])
NOMASK = np.array([0.03, 0.97])


def test_vote_undecided_until_enough_evidence_then_decided_once():
    v = PersonVote(NAMES, VoteParams(decide_margin=3.0, min_votes=3))
    out = [v.add(MASK, 40, t * 0.04) for t in range(5)]
    # weights 1 each: evidence (1,0) lead 1, (2,0) 2, (3,0) 3 -> decided on the 3rd vote
    assert out[0] is None and out[1] is None
    assert out[2] is not None and out[2].event == "decided" and out[2].label == "with_mask"
    assert out[2].previous == UNDECIDED and out[2].votes == 3
    assert out[2].confidence == pytest.approx(0.97)
    assert out[3] is None and out[4] is None


def test_small_faces_and_low_confidence_need_more_votes():
    v = PersonVote(NAMES, VoteParams(small_face_weight=0.5))
    got = [v.add(MASK, 10, t) for t in range(6)]  # weight 0.5 each: lead 3 after 6 votes
    assert [g is not None for g in got] == [False] * 5 + [True]
    w = PersonVote(NAMES)
    assert all(w.add(np.array([0.55, 0.45]), 40, t) is None for t in range(20))  # under min_confidence
    assert w.label == UNDECIDED and w.votes == 0


def test_one_bad_frame_never_flips_a_decided_person():
    prm = VoteParams(change_delay_s=0.0)  # even with no delay
    v = PersonVote(NAMES, prm)
    for t in range(10):
        v.add(MASK, 40, t * 0.1)
    assert v.label == "with_mask"
    for t in range(10, 60):
        probs = NOMASK if t % 3 == 0 else MASK  # every third frame wrong
        assert v.add(probs, 40, t * 0.1) is None
    assert v.label == "with_mask"


def test_label_changes_after_the_configured_delay():
    v = PersonVote(NAMES, VoteParams(change_delay_s=1.0, cap=5, change_margin=2))
    t, dt = 0.0, 0.1
    for _ in range(10):
        v.add(MASK, 40, t)
        t += dt
    assert v.label == "with_mask"
    # mask off at t=1.0: evidence (5,0) -> lead of without_mask >= 2 after 4 votes (t=1.3)
    changes = []
    while t < 4.0:
        tr = v.add(NOMASK, 40, t)
        if tr is not None:
            changes.append((round(t, 2), tr))
        t += dt
    assert len(changes) == 1
    when, tr = changes[0]
    assert tr.event == "changed" and tr.label == "without_mask" and tr.previous == "with_mask"
    assert when == pytest.approx(1.3 + 1.0)  # the lead began at 1.3, the delay is 1.0 s


def test_change_is_cancelled_when_the_lead_breaks():
    v = PersonVote(NAMES, VoteParams(change_delay_s=1.0))
    for t in range(10):
        v.add(MASK, 40, t * 0.1)
    for t in range(10, 15):
        v.add(NOMASK, 40, t * 0.1)
    assert v.pending is not None and v.contested
    for t in range(15, 25):  # back to the mask before the delay ran out
        assert v.add(MASK, 40, t * 0.1) is None
    assert v.label == "with_mask" and v.pending is None


def test_tick_completes_a_pending_change_without_new_votes():
    v = PersonVote(NAMES, VoteParams(change_delay_s=0.5))
    for t in range(10):
        v.add(MASK, 40, t * 0.1)
    for t in range(10, 14):
        v.add(NOMASK, 40, t * 0.1)
    assert v.label == "with_mask" and v.pending is not None
    assert v.tick(1.5) is None
    tr = v.tick(1.3 + 0.5)
    assert tr is not None and tr.label == "without_mask"


@pytest.mark.parametrize(
    "kw",
    [
        {"min_confidence": 0.95, "full_confidence": 0.9},
        {"small_face_weight": 1.5},
        {"decide_margin": 0},
        {"decide_margin": 6, "cap": 5},
        {"change_delay_s": -1},
        {"decide_margin": 1.0, "change_margin": 1.0},  # one bad vote could flip a decision
    ],
)
def test_bad_vote_params_are_refused(kw):
    with pytest.raises(ValueError):
        VoteParams(**kw)


# ---------------------------------------------------------------- schedule


def test_schedule_undecided_more_often_than_decided_and_caps_per_frame():
    p = ScheduleParams(undecided_every=2, decided_every=10, max_per_frame=0)
    since = np.array([1, 2, 5, 10, -1])
    settled = np.array([False, False, True, True, True])
    due = due_for_classification(since, settled, p)
    assert sorted(due.tolist()) == [1, 3, 4]
    assert due[0] == 4  # never classified first
    capped = due_for_classification(since, settled, ScheduleParams(2, 10, max_per_frame=2))
    assert capped.tolist() == [4, 1]  # then the most overdue: 2/2 = 1.0 ties 10/10, undecided first


def test_detector_interval_follows_the_frame_rate():
    from core.track import detector_interval

    assert detector_interval(5, 5, 0.2, 0.04) == 5  # 25 fps
    assert detector_interval(5, 5, 0.2, 0.2) == 1  # 5 fps: every frame
    assert detector_interval(10, 5, 0.2, 0.04) == 10  # backing off at 25 fps
    assert detector_interval(10, 5, 0.2, 0.2) == 2  # backing off at 5 fps
    assert detector_interval(5, 5, 0.2, None) == 5


def test_camera_pan_at_low_fps_keeps_ids_with_the_measured_shift():
    """Five faces in a row 1.2 sizes apart; the camera pans by one face spacing per frame, so each face lands
    where its neighbour was. With the pan given, ids stay; this is what people.camera_motion measures."""
    frames = [[box(300 + 48 * j - 48 * i, 200, 40) for j in range(5)] for i in range(6)]
    tr = FaceTracker()
    ids, _ = run_with_shift(tr, frames, (-48.0, 0.0))
    assert all(m == {j: j + 1 for j in range(5)} for m in ids[1:])


def run_with_shift(tracker, frames, shift):
    out, steps = [], []
    for k, dets in enumerate(frames):
        st = tracker.step(np.array(dets, np.float32).reshape(-1, 5), None if k == 0 else shift)
        steps.append(st)
        out.append({int(d): int(i) for i, d in zip(st.ids, st.det_index) if d >= 0})
    return out, steps


def test_estimate_shift_measures_a_pan():
    import cv2

    from core.track.motion import estimate_shift, small_gray

    rng = np.random.default_rng(0)
    big = cv2.GaussianBlur(rng.integers(0, 255, (900, 1600, 3), np.uint8), (0, 0), 3)
    a, b = big[100:820, 200:1480], big[100 + 12 : 820 + 12, 200 + 40 : 1480 + 40]  # camera moved right/down
    (ga, s), (gb, _) = small_gray(a), small_gray(b)
    dx, dy = estimate_shift(ga, gb, s)
    assert abs(dx - (-40)) < 4 and abs(dy - (-12)) < 4  # the content moved left/up
    assert estimate_shift(ga, ga, s) == pytest.approx((0.0, 0.0), abs=0.5)


def test_estimate_shift_leaves_its_inputs_unchanged():
    """The tracker keeps each frame's small image as the next frame's ``prev``: windowing it in place
    (what cv2.phaseCorrelate does to its arguments) would correlate a twice-windowed image next time."""
    from core.track.motion import estimate_shift

    rng = np.random.default_rng(1)
    a = rng.random((90, 160), dtype=np.float32)
    b = np.roll(a, 3, axis=1)
    a0, b0 = a.copy(), b.copy()
    first = estimate_shift(a, b, 1.0)
    assert np.array_equal(a, a0) and np.array_equal(b, b0)
    assert estimate_shift(a, b, 1.0) == first  # the same inputs give the same shift on a second call
    assert first[0] == pytest.approx(3.0, abs=0.1)


@pytest.mark.parametrize("cap, same_id", [(3.0, True), (1.5, False)])
def test_max_gate_growth_caps_how_far_a_lost_face_may_come_back(cap, same_id):
    """A still 40-px face, seen 4 times, then missing for 20 detector runs: its gate has grown to
    1.5 x min(cap, 1 + 0.1 x 19) face sizes: 4.35 with cap 3, 2.25 with cap 1.5. A confident face 3.5 sizes
    away takes its id back only under the larger cap; otherwise it is a new person."""
    tr = FaceTracker(TrackerParams(max_gate_growth=cap))
    frames: list = [[box(100, 100, 40)] for _ in range(4)] + [[] for _ in range(20)] + [[box(240, 100, 40)]] * 2
    ids, steps = run(tr, frames)
    assert ids[3] == {0: 1}
    assert ids[-1] == ({0: 1} if same_id else {0: 2})


@pytest.mark.parametrize("anchor_in_view, same_id", [(False, False), (True, True)])
def test_one_undersized_box_does_not_split_a_face_in_view_with_anchor_in_view(anchor_in_view, same_id):
    """A still 160-px face, detector every 5 frames. One detection comes 30% smaller (a detector's jitter, as on
    the tune clip 04_cut): the filter takes a shrinking size velocity, and 5 frames later its prediction is under
    half the face's size, past the size gate (2x). Matching at the last observed box (anchor_in_view) keeps the
    id; without it the face becomes a new track."""
    tr = FaceTracker(TrackerParams(anchor_in_view=anchor_in_view))
    frames: list = []
    for k in range(5):
        s = 112 if k == 3 else 160
        frames += [[box(500, 250, s)]] + [None] * 4
    frames += [[box(500, 250, 160)]]
    ids, steps = run(tr, frames)
    assert ids[15] == {0: 1}
    pred = steps[19].boxes[0]
    assert (pred[2] - pred[0]) < 80  # the carried prediction shrank under half the face (the size gate is 2x)
    assert ids[20] == ({0: 1} if same_id else {})
