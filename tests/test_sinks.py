"""Sinks: playable video with the right frame count and fps, JSON Lines events, rate-limited snapshots;
closed on every exit path; no credentials in any file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.errors import UserError  # noqa: E402
from stream.frames import Frame, SourceEvent, SourceState  # noqa: E402
from stream.results import Detection, FrameResult, SkippedFrame  # noqa: E402
from stream.sinks import EventsSink, SnapshotSink, VideoSink, output_paths  # noqa: E402
from tests._stream_fakes import count_frames, make_frame  # noqa: E402

SECRET_ID = "rtsp://admin:hunter2@10.0.0.5:554/live?token=s3cret"


def res(sid="cam", i=0, t=0.0, label="with_mask", dets=(), h=48, w=64):
    f = Frame(sid, i, np.full((h, w, 3), (i * 10) % 256, np.uint8), t, 40.0 * i)
    return FrameResult(f, label, 0.75, (0.75, 0.25), tuple(dets), None)


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_video_frame_count_size_and_fps(tmp_path, suffix):
    path = tmp_path / f"v{suffix}"
    with VideoSink(path, ["cam"], {"cam": 12.5}) as sink:
        for i in range(17):
            r = res(i=i)
            sink.write(r, r.frame.image)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12.5, abs=0.01)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)
    cap.release()
    assert count_frames(path) == 17


def test_video_live_fps_is_measured_and_sizes_adapt(tmp_path):
    path = tmp_path / "live.mp4"
    with VideoSink(path, ["cam"]) as sink:  # no fps: measured from capture times (10 fps here)
        for i in range(40):
            r = res(i=i, t=100.0 + 0.1 * i, h=48 if i < 20 else 96, w=64 if i < 20 else 128)
            sink.write(r, r.frame.image)
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0, abs=0.05)
    cap.release()
    assert count_frames(path) == 40


def test_video_few_frames_flushed_on_close(tmp_path):
    path = tmp_path / "short.avi"
    with VideoSink(path, ["cam"]) as sink:
        for i in range(3):
            r = res(i=i, t=i * 0.04)
            sink.write(r, r.frame.image)
    assert count_frames(path) == 3


def test_video_closed_and_playable_after_exception(tmp_path):
    path = tmp_path / "crash.mp4"
    with pytest.raises(RuntimeError):
        with VideoSink(path, ["cam"], {"cam": 25.0}) as sink:
            for i in range(5):
                r = res(i=i)
                sink.write(r, r.frame.image)
            raise RuntimeError("boom")
    assert count_frames(path) == 5


def test_video_several_sources_one_file_each(tmp_path):
    assert output_paths(tmp_path / "o.mp4", 2) == [tmp_path / "o-0.mp4", tmp_path / "o-1.mp4"]
    with VideoSink(tmp_path / "o.mp4", ["a", "b"], {"a": 25.0, "b": 25.0}) as sink:
        for i in range(4):
            for sid in ("a", "b")[: 1 + (i % 2)]:
                r = res(sid, i)
                sink.write(r, r.frame.image)
    assert count_frames(tmp_path / "o-0.mp4") == 4 and count_frames(tmp_path / "o-1.mp4") == 2


def test_video_bad_suffix(tmp_path):
    with pytest.raises(UserError, match="must end in .mp4"):
        VideoSink(tmp_path / "x.mkv", ["a"])


def test_events_lines_and_types(tmp_path):
    path = tmp_path / "e" / "ev.jsonl"
    det = Detection((1.0, 2.0, 30.5, 40.25), "without_mask", 1, 0.875, 0.6)
    with EventsSink(path) as sink:
        sink.event(SourceEvent(SECRET_ID, SourceState.RECONNECTING, 5.0, f"cannot open {SECRET_ID}", 2))
        r = res(SECRET_ID, 7, dets=[det])
        sink.write(r, r.frame.image)
        sink.skip(SkippedFrame(make_frame(SECRET_ID, 8), "zero-size image (0, 0, 3)"))
    text = path.read_text()
    assert "hunter2" not in text and "s3cret" not in text
    objs = [json.loads(line) for line in text.splitlines()]
    assert [o["type"] for o in objs] == ["state", "frame", "detection", "skip"]
    st, fr, de, sk = objs
    assert (
        st["state"] == "reconnecting"
        and st["attempt"] == 2
        and st["source"] == "rtsp://admin:***@10.0.0.5:554/live?token=***"
    )
    assert fr["frame_index"] == 7 and fr["label"] == "with_mask" and fr["score"] == 0.75 and fr["boxes"] == 1
    assert fr["pos_ms"] == 280.0 and isinstance(fr["time"], float)
    assert de == {
        "type": "detection",
        "source": st["source"],
        "frame_index": 7,
        "time": fr["time"],
        "label": "without_mask",
        "score": 0.875,
        "box": [1.0, 2.0, 30.5, 40.2],
        "map_score": 0.6,
    }
    assert sk["frame_index"] == 8 and sk["reason"].startswith("zero-size")


def test_events_unwritable(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="events .*cannot be written"):
        EventsSink(tmp_path / "f" / "x.jsonl")


def test_snapshots_rate_limited_per_source(tmp_path):
    bad = Detection((0.0, 0.0, 10.0, 10.0), "without_mask", 1, 0.9)
    good = Detection((0.0, 0.0, 10.0, 10.0), "with_mask", 0, 0.9)
    with SnapshotSink(tmp_path / "s", ["without_mask"], interval_s=2.0) as sink:
        for sid, i, t, d in [
            ("a", 0, 0.0, bad),
            ("a", 1, 1.0, bad),
            ("a", 2, 2.5, bad),
            ("a", 3, 9.0, good),
            (SECRET_ID, 0, 0.5, bad),
        ]:
            r = res(sid, i, t, label="with_mask", dets=[d])
            sink.write(r, r.frame.image)
    names = sorted(p.name for p in (tmp_path / "s").iterdir())
    assert len(names) == 3 and "a_0000000_without_mask.jpg" in names and "a_0000002_without_mask.jpg" in names
    assert not any("hunter2" in n for n in names)
    assert cv2.imread(str(tmp_path / "s" / "a_0000000_without_mask.jpg")).shape == (48, 64, 3)


def test_snapshot_on_frame_label(tmp_path):
    with SnapshotSink(tmp_path, ["without_mask"], 0.0) as sink:
        r = res("a", 0, label="without_mask")
        sink.write(r, r.frame.image)
    assert len(list(tmp_path.glob("*.jpg"))) == 1
