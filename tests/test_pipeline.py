"""The whole pipeline: every frame of a file exactly once, bad frames never fatal, an error anywhere
ends it cleanly (no thread left), no credentials in any output."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import Config, ThresholdConfig, WorkerConfig, from_dict  # noqa: E402
from stream.frames import Frame, SourceEvent, SourceState  # noqa: E402
from stream.overlay import build_annotators  # noqa: E402
from stream.pipeline import Pipeline, PipelineError, build_pipeline  # noqa: E402
from stream.processor import Processor  # noqa: E402
from stream.sinks import EventsSink, Sink, VideoSink  # noqa: E402
from tests._stream_fakes import (  # noqa: E402
    FakeDetector,
    FakeSource,
    count_frames,
    make_frame,
    save_seeded_checkpoint,
    torch_backend,
    write_video,
)

SECRET_ID = "rtsp://admin:hunter2@10.0.0.5:554/live?token=s3cret"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64)


@pytest.fixture(scope="module")
def backend(ckpt):
    return torch_backend(ckpt)


def no_extra_threads(before: set[threading.Thread], timeout: float = 5.0) -> list[threading.Thread]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        extra = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not extra:
            return []
        time.sleep(0.05)
    return extra


def cfg_for(tmp_path: Path, **sinks) -> Config:
    return from_dict(
        {
            "sinks": {"display": False, **sinks},
            "run": {"progress": False},
            "worker": {"batch_size": 4, "batch_timeout_ms": 5},
        }
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize("mode", ["frame", "faces"])
def test_file_every_frame_exactly_once(tmp_path, ckpt, backend, mode):
    clip = write_video(tmp_path / "in.avi", n=23, size=(96, 72))
    out, ev = tmp_path / "out.mp4", tmp_path / "ev.jsonl"
    cfg = from_dict(
        {
            "sources": {"specs": [str(clip)], "file_queue": 4},
            "worker": {"batch_size": 4, "batch_timeout_ms": 5, "mode": mode, "checkpoint": str(ckpt)},
            "sinks": {"display": False, "output": str(out), "events": str(ev), "snapshots": str(tmp_path / "s")},
            "run": {"progress": False},
        }
    )
    before = set(threading.enumerate())
    pipe = build_pipeline(cfg, backend=backend, detector=FakeDetector() if mode == "faces" else None)
    summary = pipe.run()
    assert summary.frames_in == summary.frames_out == 23 and summary.frames_dropped == 0
    assert count_frames(out) == 23
    objs = [json.loads(line) for line in ev.read_text().splitlines()]
    idx = [o["frame_index"] for o in objs if o["type"] == "frame"]
    assert sorted(idx) == list(range(23)) and idx == sorted(idx)
    states = [o["state"] for o in objs if o["type"] == "state"]
    assert states[-1] == "end_of_stream" and "connected" in states
    if mode == "faces":
        # people on (the default): each face becomes a person at its 2nd detection (frame 1), then every
        # frame shows it; each person appears and leaves exactly once
        assert sum(o["type"] == "detection" for o in objs) == 2 * 22
        ends = sorted((o["event"], o["person_id"]) for o in objs if o["type"] == "person" and o["event"] != "decided")
        assert [e for e in ends if e[0] != "changed"] == [("appeared", 1), ("appeared", 2), ("left", 1), ("left", 2)]
        # tracked faces report the detector's face box, as the every-frame path does (not the classifier's crop)
        faces = np.array([[9.6, 7.2, 38.4, 36.0], [48.0, 14.4, 86.4, 57.6]])  # FakeDetector's boxes at 96x72
        found = [o for o in objs if o["type"] == "detection" and o["map_score"] is not None]  # detector ran
        for o in found:  # (between runs the boxes are predicted, and the moving square looks like a camera pan)
            assert np.abs(faces - np.array(o["box"])).max(1).min() <= 0.06, o  # the crop would be 4.3 px off
        assert len(found) >= 2 * 4  # the detector ran on frames 1, 6, 11, 16, 21
        assert pipe.people.live == {str(clip): False}  # a file: the detector interval never backs off
    assert no_extra_threads(before) == []
    assert summary.stopped_by == "end of input"


@pytest.mark.timeout(60)
def test_bad_frames_from_a_source_never_crash(backend):
    items = [
        Frame("cam", 0, np.zeros((0, 0, 3), np.uint8), 0.0),
        make_frame("cam", 1),
        Frame("cam", 2, np.full((40, 50), 120, np.uint8), 0.0),
        Frame("cam", 3, np.zeros((40, 50, 4), np.uint8), 0.0),
        Frame("cam", 4, np.zeros((0, 50, 3), np.uint8), 0.0),
        make_frame("cam", 5, h=33, w=17),
    ]
    proc = Processor(backend, WorkerConfig())
    pipe = Pipeline([FakeSource(items, "cam")], proc.process, batch_size=4)
    pipe.annotators = build_annotators(Config().overlay, pipe.summary.monitor)
    s = pipe.run()
    assert (s.frames_in, s.frames_out, s.frames_skipped) == (6, 4, 2)


class ExplodingSink(Sink):
    def __init__(self, after: int):
        self.after, self.n, self.closed = after, 0, False

    def write(self, result, annotated):
        self.n += 1
        if self.n > self.after:
            raise OSError("disk full (simulated)")

    def close(self):
        self.closed = True


@pytest.mark.timeout(60)
@pytest.mark.parametrize("where", ["worker", "sink", "source"])
def test_error_anywhere_ends_pipeline_cleanly(tmp_path, backend, where):
    proc = Processor(backend, WorkerConfig())

    def process(frames):
        if where == "worker" and frames[0].index >= 6:
            raise ValueError("injected worker failure")
        return proc.process(frames)

    # a live source that never ends: only the error can stop the run
    src = FakeSource(
        [make_frame("cam", i) for i in range(10_000)],
        "cam",
        live=True,
        end=False,
        fail_at=9 if where == "source" else None,
    )
    video = VideoSink(tmp_path / "o.avi", ["cam"], {"cam": 25.0})
    sinks = [video, ExplodingSink(4 if where == "sink" else 10**9)]
    before = set(threading.enumerate())
    pipe = Pipeline([src], process, sinks=sinks, batch_size=2)
    t0 = time.monotonic()
    with pytest.raises(PipelineError) as ei:
        pipe.run()
    assert time.monotonic() - t0 < 30
    msg = str(ei.value)
    expected = {
        "worker": "worker failed: ValueError: injected worker failure",
        "sink": "pipeline stopped: OSError: disk full (simulated)",
        "source": "worker failed: RuntimeError: fake source exploded",
    }[where]
    assert expected in msg, msg
    assert src.stopped and sinks[1].closed
    assert no_extra_threads(before) == []
    assert count_frames(tmp_path / "o.avi") >= 1  # the video was closed properly


@pytest.mark.timeout(60)
def test_stop_request_and_max_frames(backend):
    proc = Processor(backend, WorkerConfig())
    src = FakeSource([make_frame("cam", i) for i in range(10_000)], "cam", live=True, end=False)
    pipe = Pipeline([src], proc.process, batch_size=2, max_frames=7)
    s = pipe.run()
    assert s.frames_out == 7 and s.stopped_by == "max frames"
    src2 = FakeSource([make_frame("cam", i) for i in range(10_000)], "cam", live=True, end=False)
    pipe2 = Pipeline([src2], proc.process, batch_size=2)
    pipe2.on_result = lambda r, lat: pipe2.request_stop("enough") if r.frame.index >= 3 else None
    s2 = pipe2.run()
    assert s2.stopped_by == "enough" and s2.frames_out >= 4 and src2.stopped


@pytest.mark.timeout(60)
def test_two_sources_batched_together_and_states(tmp_path, backend):
    seen_batches = []
    proc = Processor(backend, WorkerConfig())

    def process(frames):
        seen_batches.append({f.source_id for f in frames})
        return proc.process(frames)

    a = FakeSource([make_frame("a", i) for i in range(8)], "a")
    ev = SourceEvent("b", SourceState.RECONNECTING, time.monotonic(), "retrying", 1)
    b = FakeSource([make_frame("b", 0), ev, *[make_frame("b", i) for i in range(1, 8)]], "b")
    evp = tmp_path / "e.jsonl"
    pipe = Pipeline([a, b], process, sinks=[EventsSink(evp)], batch_size=4, batch_timeout_s=0.05)
    s = pipe.run()
    assert s.frames_out == 16 and any(len(x) == 2 for x in seen_batches)
    objs = [json.loads(line) for line in evp.read_text().splitlines()]
    b_frames = [o["frame_index"] for o in objs if o.get("source") == "b" and o["type"] == "frame"]
    assert b_frames == list(range(8))
    assert s.monitors["b"].state is SourceState.END_OF_STREAM


@pytest.mark.timeout(60)
def test_no_credentials_in_events_overlay_or_summary(tmp_path, backend):
    from stream.redact import redact_text

    sid = redact_text(SECRET_ID)  # what stream.sources stamps on frames
    items = [make_frame(sid, i) for i in range(3)] + [
        SourceEvent(sid, SourceState.RECONNECTING, time.monotonic(), "retrying", 1)
    ]
    proc = Processor(backend, WorkerConfig(threshold=ThresholdConfig("fraction", 0.0, 0.0)))
    evp = tmp_path / "e.jsonl"
    texts = []
    pipe = Pipeline([FakeSource(items, sid)], proc.process, sinks=[EventsSink(evp)], batch_size=2)
    pipe.annotators = build_annotators(Config().overlay, pipe.summary.monitor)
    hud = pipe.annotators[-1]
    pipe.on_result = lambda r, lat: texts.append(hud.text(r))
    s = pipe.run()
    blob = evp.read_text() + "\n".join(texts) + s.format()
    assert "hunter2" not in blob and "s3cret" not in blob and "10.0.0.5" in blob
    assert len(texts) == 3


class ScriptedDisplay:
    """Stands in for stream.display.Display: returns the scripted key actions, one per frame shown."""

    def __init__(self, actions):
        self.actions, self.paused, self.shown, self.closed = list(actions), False, 0, False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True

    def show(self, source_id, image):
        self.shown += 1
        return self.actions.pop(0) if self.actions else None

    def poll(self, wait_ms=30):
        return None


@pytest.mark.timeout(60)
def test_keys_toggle_heatmap_and_quit(backend):
    from stream.display import QUIT, TOGGLE_HEATMAP

    proc = Processor(backend, WorkerConfig())
    src = FakeSource([make_frame("cam", i) for i in range(10_000)], "cam", live=True, end=False)
    disp = ScriptedDisplay([None, TOGGLE_HEATMAP, None, QUIT])
    pipe = Pipeline([src], proc.process, display=disp, batch_size=1)
    pipe.annotators = build_annotators(Config().overlay, pipe.summary.monitor)
    s = pipe.run()
    assert s.stopped_by == "quit key" and disp.shown == 4 and disp.closed and src.stopped
    assert pipe.annotators[0].enabled is False


def test_headless_display_is_off_and_harmless(monkeypatch):
    from stream.display import Display, display_available

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    if sys.platform.startswith("linux"):
        assert display_available()[0] is False
        with Display(enabled=True) as d:
            assert d.active is False and d.show("cam", np.zeros((4, 4, 3), np.uint8)) is None and d.poll() is None
    with Display(enabled=False) as d:
        assert d.active is False


class CountingDetector(FakeDetector):
    """FakeDetector that also counts the images it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0

    def detect(self, images):
        self.images += len(images)
        return super().detect(images)


@pytest.mark.timeout(90)
def test_an_image_folder_is_judged_photo_by_photo_with_people_on(tmp_path, ckpt, backend):
    """A folder of unrelated photos is not a video: with people tracking on (the default) the detector still
    runs on every photo and every face of every photo is reported, with no person ids or events."""
    import cv2

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(7):
        cv2.imwrite(str(folder / f"p{i}.png"), np.random.default_rng(i).integers(0, 256, (60, 80, 3), np.uint8))
    ev = tmp_path / "ev.jsonl"
    cfg = from_dict({
        "sources": {"specs": [str(folder)]},
        "worker": {"batch_size": 4, "batch_timeout_ms": 5, "mode": "faces", "checkpoint": str(ckpt)},
        "sinks": {"display": False, "events": str(ev)},
        "run": {"progress": False},
    })
    assert cfg.people.enabled
    det = CountingDetector()
    pipe = build_pipeline(cfg, backend=backend, detector=det)
    summary = pipe.run()
    assert summary.frames_out == 7 and pipe.people is None
    assert det.images == 7  # tracking would have detected on photos 0, 1 and 6 only
    objs = [json.loads(line) for line in ev.read_text().splitlines()]
    dets = [o for o in objs if o["type"] == "detection"]
    assert len(dets) == 2 * 7 and all(o.get("person_id") is None for o in dets)
    assert not [o for o in objs if o["type"] == "person"]
    assert sorted(o["name"] for o in objs if o["type"] == "frame") == [f"p{i}.png" for i in range(7)]
