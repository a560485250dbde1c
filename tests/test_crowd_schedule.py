"""The scheduled crowd tier (issue 18): which frames get the full-cost pass (round-robin tiles, back-off),
how its boxes join the cheap ones, a face it finds followed by the tracker between passes, image-folder
photos judged alone, the config refused by key, and the crowd preset."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from core.detect import DEFAULT, TiledDetector, TilingOptions, detector_class  # noqa: E402
from core.detect.tiled import detect_regions, pass_regions  # noqa: E402
from core.track import FaceTracker, TrackerParams  # noqa: E402
from core.track.crowd_schedule import adapt_backoff, combine_passes, cycle_frames, pieces_due  # noqa: E402
from stream.config import WorkerConfig, load_config  # noqa: E402
from stream.crowd_config import CrowdConfig  # noqa: E402
from stream.crowd_pass import CrowdPass  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.frames import Frame  # noqa: E402
from stream.people import PeopleStage  # noqa: E402
from stream.people_config import PeopleConfig  # noqa: E402
from stream.processor import Processor  # noqa: E402
from stream.results import FrameResult  # noqa: E402
from tests._detect_fakes import BlobDetector as _BlobDetector  # noqa: E402
from tests._stream_fakes import CLASSES, save_seeded_checkpoint, torch_backend  # noqa: E402


class BlobDetector(_BlobDetector):
    """The blob fake with this file's score threshold (0.3: its weak seeds of 0.4 pass it)."""

    default_options = {**_BlobDetector.default_options, "score_threshold": 0.3}


# ---------------------------------------------------------------- the schedule (pure)


def test_cycle_frames_from_frames_seconds_and_backoff():
    assert cycle_frames(25, None, 0.04, 1.0) == 25
    assert cycle_frames(25, 2.0, 0.04, 1.0) == 50  # 2 s at 25 fps
    assert cycle_frames(25, 2.0, None, 1.0) == 25  # the period is not known yet: frames
    assert cycle_frames(25, 2.0, 0.5, 1.0) == 4  # 2 s at 2 fps
    assert cycle_frames(25, None, 0.04, 1.5) == 38  # ceil(37.5)
    assert cycle_frames(1, 0.001, 0.04, 1.0) == 1


def _schedule(n_frames: int, cycle: int, n_pieces: int, spread: bool) -> list[tuple[int, int]]:
    """(frame, pieces) for every frame that gets pieces, driving pieces_due like CrowdPass does."""
    since, out = 10**9, []
    for f in range(n_frames):
        n = pieces_due(since, cycle, n_pieces, spread)
        if n:
            out.append((f, n))
            since = 1
        else:
            since += 1
    return out


def test_spread_pieces_run_one_at_a_time_evenly_over_the_cycle():
    # 4 tiles, a cycle of 20 frames: one tile every 5 frames, the whole frame once per 20 frames
    assert _schedule(41, 20, 4, True) == [(f, 1) for f in range(0, 41, 5)]
    # more tiles than frames in the cycle: one tile per frame
    assert _schedule(4, 2, 6, True) == [(0, 1), (1, 1), (2, 1), (3, 1)]


def test_unspread_pass_runs_every_piece_together_once_per_cycle():
    assert _schedule(41, 20, 4, False) == [(0, 4), (20, 4), (40, 4)]
    assert _schedule(30, 10, 1, True) == [(0, 1), (10, 1), (20, 1)]  # one piece: spreading changes nothing


def test_pieces_due_rejects_nonsense():
    with pytest.raises(ValueError):
        pieces_due(0, 0, 1, True)


def test_backoff_grows_while_slower_than_the_source_and_returns():
    b = 1.0
    for _ in range(3):
        b = adapt_backoff(b, 0.08, 0.04, 4.0)  # twice the period
    assert b == pytest.approx(1.25**3)
    for _ in range(10):
        b = adapt_backoff(b, 0.08, 0.04, 4.0)
    assert b == 4.0
    assert adapt_backoff(2.0, 0.03, 0.04, 4.0) == 2.0  # between half and 90% of the period: hold
    assert adapt_backoff(2.0, 0.08, None, 4.0) == 2.0  # unknown period: hold
    for _ in range(10):
        b = adapt_backoff(b, 0.01, 0.04, 4.0)
    assert b == 1.0


def test_combine_passes_keeps_the_cheap_box_and_marks_seeds():
    cheap = np.array([[0, 0, 20, 20, 0.2], [100, 100, 140, 140, 0.9]], np.float32)
    seeds = np.array([[1, 1, 21, 21, 0.6],  # the first cheap face again: vouched, score 0.6
                      [50, 50, 58, 58, 0.4],  # a small face only the full-cost pass saw
                      [105, 105, 112, 112, 0.5]], np.float32)  # inside the large face but 5x smaller: another face
    d, s = combine_passes(cheap, seeds)
    np.testing.assert_allclose(d, [[0, 0, 20, 20, 0.6], [100, 100, 140, 140, 0.9],
                                   [105, 105, 112, 112, 0.5], [50, 50, 58, 58, 0.4]])
    assert s.tolist() == [True, False, True, True]
    d, s = combine_passes(np.zeros((0, 5)), seeds[:1])
    assert d.tolist() == seeds[:1].tolist() and s.tolist() == [True]
    d, s = combine_passes(cheap, np.zeros((0, 5)))
    assert d.tolist() == cheap.tolist() and not s.any()


# ---------------------------------------------------------------- pieces of a pass


def test_pass_regions_and_detect_regions_of_a_tiled_and_a_plain_detector():
    frame = np.zeros((100, 200, 3), np.uint8)
    frame[10:20, 150:160] = 255  # in the right tile only
    frame[40:50, 20:30] = 255  # in the left tile only
    tiled = TiledDetector(BlobDetector(), TilingOptions(tiles=2, overlap=0.25))
    regions = pass_regions(tiled, frame.shape[:2])
    assert regions.tolist() == [[0, 0, 115, 100], [85, 0, 200, 100]]
    np.testing.assert_allclose(detect_regions(tiled, frame, regions[1:]), [[150, 10, 160, 20, 0.9]])
    np.testing.assert_allclose(detect_regions(tiled, frame, regions[:1]), [[20, 40, 30, 50, 0.9]])
    plain = BlobDetector()
    assert pass_regions(plain, frame.shape[:2]).tolist() == [[0, 0, 200, 100]]
    assert len(detect_regions(plain, frame, pass_regions(plain, frame.shape[:2]))) == 2


def _frame(i: int, image: np.ndarray, fps: float = 25.0, source: str = "cam") -> Frame:
    return Frame(source, i, image, time.monotonic(), pos_ms=1000.0 * i / fps)


def test_crowd_pass_visits_the_tiles_round_robin_and_backs_off():
    tiled = TiledDetector(BlobDetector(), TilingOptions(tiles=2, overlap=0.25))
    cp = CrowdPass(tiled, CrowdConfig(every=10, backoff_max=2.0))
    img = np.zeros((100, 200, 3), np.uint8)
    ran = []
    for i in range(21):
        piece = cp.run(_frame(i, img), i / 25.0, 5)
        if piece is not None:
            ran.append((i, piece.region[0], piece.hold_frames))
    # the first frame: both tiles (the union's left edge is 0); then a tile every 10 // 2 = 5 frames, round-robin
    # (left, right, ...); hold = the longest cycle (10 x backoff_max 2) + the cheap interval
    assert ran == [(0, 0, 25), (5, 0, 25), (10, 85, 25), (15, 0, 25), (20, 85, 25)]
    assert cp.state("cam").pieces_run == 6
    for _ in range(5):
        cp.adapt("cam", 0.08)  # slower than 25 fps
    assert cp.cycle("cam") == 20
    assert cp.cycle("other") == 10  # per source


# ---------------------------------------------------------------- the tracker follows a seeded face


def test_a_seeded_track_is_held_through_cheap_misses_and_followed_by_weak_matches():
    crowd = TrackerParams(low_score=0.1)  # configs/crowd.yaml's (the default is 0.4)
    tr = FaceTracker(crowd)
    small = np.array([[100, 100, 110, 110, 0.35]], np.float32)  # too weak to start a track by itself
    none = np.zeros((0, 5), np.float32)
    assert len(tr.step(small).ids) == 0  # the cheap pass alone: no person
    tr = FaceTracker(crowd)
    s0 = tr.step(small, seeded=np.array([True]), hold_frames=10)
    assert s0.ids.tolist() == [] and s0.confirmed == ()  # a weak seed starts a tentative, held track
    assert tr.step(np.zeros((0, 5), np.float32)).ids.tolist() == []  # the cheap pass misses it: kept (held)
    tr = FaceTracker(crowd)
    sure = small.copy()
    sure[0, 4] = 0.6  # tracker.new_track_score
    s0 = tr.step(sure, seeded=np.array([True]), hold_frames=10)
    assert s0.ids.tolist() == [1] and s0.confirmed == (1,)  # a confident seed starts a confirmed track at once
    for _ in range(3):  # the cheap detector runs and misses it, or does not run: the track is held
        assert tr.step(none).ids.tolist() == [1]
        assert tr.step(None).ids.tolist() == [1]
    # a weak cheap box (0.15) 2 px to the right: the second match follows the face
    weak = tr.step(np.array([[102, 100, 112, 110, 0.15]], np.float32))
    assert weak.ids.tolist() == [1] and weak.det_index.tolist() == [0]
    np.testing.assert_allclose(weak.boxes[0], [102, 100, 112, 110], atol=1.0)
    for _ in range(3):  # frames 8-10: still held (the weak match does not renew the hold)
        assert tr.step(none).ids.tolist() == [1]
    assert tr.step(none).ids.tolist() == []  # frame 11 > held_until (10): the hold has run out, lost
    assert tr.step(np.array([[102, 100, 112, 110, 0.35]], np.float32), seeded=np.array([True]),
                   hold_frames=10).ids.tolist() == [1]  # the next pass finds it again: same person


def test_a_full_cost_pass_that_looks_and_misses_ends_the_hold_only_where_it_looked():
    tr = FaceTracker(TrackerParams())
    two = np.array([[20, 20, 30, 30, 0.7], [150, 20, 160, 30, 0.7]], np.float32)
    assert tr.step(two, seeded=np.array([True, True]), hold_frames=50).ids.tolist() == [1, 2]
    none = np.zeros((0, 5), np.float32)
    # the right tile is looked at and shows nothing: face 2 loses its hold, face 1 (left tile) keeps it
    step = tr.step(none, seeded=np.zeros(0, bool), seed_region=(85, 0, 200, 100), hold_frames=50)
    assert step.ids.tolist() == [1]
    ended = {}
    for f in range(2, 90):  # face 2 is lost (not shown), and ends once max_lost_frames (30) have passed
        step = tr.step(none)  # the cheap detector runs and sees neither
        ended.update({pid: f for pid in step.ended})
        assert step.ids.tolist() == ([1] if f <= 50 else [])  # face 1: held until frame 50
    assert ended == {2: 31, 1: 81}  # face 1's lost count starts when its hold ends


def test_a_weak_seed_becomes_a_person_when_the_next_pass_finds_it_and_dies_when_it_does_not():
    tr = FaceTracker(TrackerParams())
    a = np.array([[20, 20, 30, 30, 0.35]], np.float32)  # a real small face, found by both passes
    b = np.array([[150, 20, 160, 30, 0.35]], np.float32)  # a one-off false detection
    none = np.zeros((0, 5), np.float32)
    assert tr.step(np.concatenate([a, b]), seeded=np.array([True, True]), hold_frames=30).ids.tolist() == []
    for _ in range(9):  # the cheap detector sees neither; both stay tentative (held), not shown
        assert tr.step(none).ids.tolist() == []
    step = tr.step(a, seeded=np.array([True]), hold_frames=30)  # the next pass: a again, b not
    assert step.ids.tolist() == [1] and step.confirmed == (1,)
    assert len(tr.tracks) == 1  # the tentative track of b died where the pass looked and missed


# ---------------------------------------------------------------- in the worker


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return torch_backend(save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64))


def _crowd_frames(n: int) -> list[Frame]:
    """A large face moving right 1 px per frame and a small static face (8 px) in the right half."""
    out = []
    for i in range(n):
        im = np.full((120, 240, 3), 40, np.uint8)
        im[30:70, 20 + i : 60 + i] = 255
        im[50:58, 180:188] = 255
        out.append(_frame(i, im))
    return out


@pytest.mark.timeout(120)
def test_a_small_face_found_by_the_full_cost_pass_is_tracked_between_passes(backend):
    cheap = BlobDetector(min_size=12)  # the cheap detector cannot see the 8 px face
    full = TiledDetector(BlobDetector(score=0.4), TilingOptions(tiles=2, overlap=0.25))
    cfg = PeopleConfig(detect_every=5, detect_every_max=5, camera_motion=False)
    proc = Processor(backend, WorkerConfig(mode="faces", face_margin=0.0), cheap, PeopleStage(CLASSES, cfg))
    proc.crowd = CrowdPass(full, CrowdConfig(every=20, backoff_max=1.0))
    frames = _crowd_frames(40)
    results = []
    for b in range(0, 40, 4):
        results += proc.process(frames[b : b + 4])
    assert all(isinstance(r, FrameResult) for r in results)
    # pieces: a tile every 10 frames: both on frame 0, then left (10), right (20), left (30)
    assert full.tile_detector.seen == [(120, 138)] * 5
    # the cheap detector: with every piece and every 5th frame after its last run: 0, 6, 10, 15, 20, 25, 30, 35
    # (the large face, seeded on frame 0 at 0.9, is a person at once; the small face's held tentative track
    # waits for the next pass, not for the cheap detector)
    assert len(cheap.seen) == 8
    small_ids = []
    for i, r in enumerate(results):
        boxes = r.detections.xyxy
        hit = [k for k, b in enumerate(boxes) if abs(b[0] - 180) < 2 and abs(b[1] - 50) < 2]
        small_ids.append(int(r.detections.tracker_id[hit[0]]) if hit else None)
    # a weak seed (0.4) on frame 0 (the whole pass): tentative and held; the right tile finds it again on frame
    # 20: a person from then on, held by the tracker on every frame after, one id
    assert small_ids[:20] == [None] * 20
    assert len(set(small_ids[20:])) == 1 and None not in small_ids[20:]
    # without the full-cost tier the small face is never seen
    plain = Processor(backend, WorkerConfig(mode="faces", face_margin=0.0), BlobDetector(min_size=12),
                      PeopleStage(CLASSES, cfg))
    res2 = [r for b in range(0, 40, 4) for r in plain.process(_crowd_frames(40)[b : b + 4])]
    assert all(len(r.detections) <= 1 for r in res2)


@pytest.mark.timeout(120)
def test_image_folder_photos_are_judged_alone_with_the_still_detector(backend):
    cheap, still = BlobDetector(min_size=12), BlobDetector()
    stage = PeopleStage(CLASSES, PeopleConfig())
    proc = Processor(backend, WorkerConfig(mode="faces", face_margin=0.0), cheap, stage)
    proc.still_detector = still
    photos = []
    for i in range(3):
        im = np.full((100, 100, 3), 40, np.uint8)
        im[10 + 20 * i : 18 + 20 * i, 40:48] = 255  # one 8 px face, elsewhere in each photo
        photos.append(Frame("folder", i, im, time.monotonic(), name=f"p{i}.jpg"))
    results = proc.process(photos)
    for i, r in enumerate(results):  # every photo: its own face at once (no tracker, no confirmation wait)
        np.testing.assert_allclose(r.detections.xyxy, [[40, 10 + 20 * i, 48, 18 + 20 * i]])
    assert len(still.seen) == 3 and cheap.seen == []


# ---------------------------------------------------------------- config and preset


@pytest.mark.parametrize(
    "data,key",
    [
        ({"people": {"crowd": {"every": 0}}}, "people.crowd.every"),
        ({"people": {"crowd": {"every_s": -1}}}, "people.crowd.every_s"),
        ({"people": {"crowd": {"backoff_max": 0.5}}}, "people.crowd.backoff_max"),
        ({"people": {"crowd": {"spread": "yes"}}}, "people.crowd.spread"),
        ({"people": {"crowd": {"evrey": 3}}}, "people.crowd.evrey"),
        ({"worker": {"crowd_detector_options": [1]}}, "worker.crowd_detector_options"),
    ],
)
def test_bad_crowd_config_is_refused_naming_the_key(data, key):
    with pytest.raises(UserError) as e:
        load_config(None, data)
    assert f"command line: {key} " in str(e.value)


needs_default = pytest.mark.skipif(
    importlib.util.find_spec(detector_class(DEFAULT).package.module) is None,
    reason=f"{detector_class(DEFAULT).package.dist} not installed",
)


@needs_default
def test_bad_crowd_detector_option_names_its_key():
    from stream.pipeline import create_detector

    with pytest.raises(UserError, match=r"^worker\.crowd_detector_options .*unknown detector option 'tilez'"):
        create_detector(None, {"tilez": 2}, key="worker.crowd_detector_options")


def test_crowd_preset_loads_with_the_scheduled_tier():
    cfg = load_config("crowd")
    w, c = cfg.worker, cfg.people.crowd
    assert w.mode == "faces" and w.max_faces == 128 and cfg.people.enabled
    assert w.crowd_detector_options == {"input_size": 1600, "score_threshold": 0.3} and w.detector_options == {}
    assert c.every >= 1 and c.backoff_max >= 1


@needs_default
def test_crowd_preset_builds_both_tiers(tmp_path):
    import cv2

    from stream.pipeline import build_pipeline

    video = tmp_path / "v.mp4"
    wr = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (160, 96))
    for _ in range(3):
        wr.write(np.zeros((96, 160, 3), np.uint8))
    wr.release()
    cfg = load_config("crowd", {"sources": {"specs": [str(video)]}, "sinks": {"display": False}})
    pipe = build_pipeline(cfg, backend=torch_backend(save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)))
    proc = pipe.process.__self__
    full = proc.crowd.detector
    assert proc.still_detector is full  # photos: the full-cost detector on every photo
    for k, v in cfg.worker.crowd_detector_options.items():
        assert getattr(full.options, k) == v, k
    assert proc.detector.options.input_size == 640 and proc.detector.options.score_threshold == 0.1  # cheap, weak
