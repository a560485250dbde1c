"""Recording: H.264 that decodes, encoding off the pipeline thread, segments with an index that agrees
with the files, retention by size and age, event clips holding exactly the pre- and post-roll frames.

Frames carry their index as a row of black/white blocks (``index_image``), so a decoded frame says
which input frame it is (robust to H.264 at the default quality)."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import from_dict  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.frames import Frame, SourceEvent, SourceState  # noqa: E402
from stream.results import Detection, FrameResult  # noqa: E402
from stream.sinks import VideoSink  # noqa: E402
from stream.sinks import encoder as encoder_mod  # noqa: E402
from stream.sinks.clips import ClipOptions, ClipSink  # noqa: E402
from stream.sinks.encoder import VideoEncoder  # noqa: E402
from stream.sinks.record import RecordOptions, RecordSink, utc_stamp  # noqa: E402
from stream.sinks.segment_index import SegmentIndex, count_packets  # noqa: E402
from tests._recording_fakes import decode_indices, index_image  # noqa: E402

NOMASK = Detection((10, 10, 40, 40), "without_mask", 1, 0.9)
MASK = Detection((10, 10, 40, 40), "with_mask", 0, 0.9)


def result(i: int, t: float, sid: str = "cam", nomask: bool = False, size=(160, 120)) -> FrameResult:
    f = Frame(sid, i, index_image(i, size), t)
    return FrameResult(f, None, None, None, (NOMASK if nomask else MASK,), None)


# ---------------------------------------------------------------- encoder and --output


@pytest.mark.parametrize(
    "codec,suffix,name,pix",
    [("h264", ".mp4", "h264", "yuv420p"), ("mp4v", ".mp4", "mpeg4", "yuv420p"), ("mjpg", ".avi", "mjpeg", "yuvj420p")],
)
def test_encoder_codecs_decode_with_every_frame_in_order(tmp_path, codec, suffix, name, pix):
    path = tmp_path / f"v{suffix}"
    enc = VideoEncoder(path, (161, 121), 12.5, codec)  # odd size: padded to even for 4:2:0
    for i in range(30):
        enc.write(index_image(i, (161, 121)))
    enc.close()
    enc.close()  # idempotent
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == name and st.codec_context.pix_fmt == pix
        assert (st.codec_context.width, st.codec_context.height) == (162, 122)
        assert float(st.average_rate) == pytest.approx(12.5, abs=0.01)
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert decode_indices(frames) == list(range(30))


def test_mp4_is_fragmented_so_a_truncated_file_still_plays(tmp_path):
    """Cut the file anywhere after the first fragment: the frames before the cut decode."""
    path = tmp_path / "v.mp4"
    enc = VideoEncoder(path, (160, 120), 10.0, "h264", gop_s=1.0)
    for i in range(50):
        enc.write(index_image(i))
    enc.close()
    data = path.read_bytes()
    assert b"moof" in data and b"mfra" in data  # fragments, and the random-access box at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.7)])
    with av.open(str(cut)) as c:
        got = decode_indices([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])
    assert got == list(range(len(got))) and len(got) >= 20


def test_variable_rate_keeps_gaps(tmp_path):
    path = tmp_path / "vfr.mp4"
    enc = VideoEncoder(path, (160, 120), 10.0, "h264", variable_rate=True)
    times = [0.1 * i for i in range(10)] + [3.0 + 0.1 * i for i in range(10)]
    for i, t in enumerate(times):
        enc.write(index_image(i), t=t)
    enc.close()
    with av.open(str(path)) as c:
        got = [f.time for f in c.decode(video=0)]
    assert got == pytest.approx(times, abs=0.0015)


def test_video_sink_h264_default_and_codec_options(tmp_path):
    with VideoSink(tmp_path / "a.mp4", ["cam"], {"cam": 10.0}) as sink:
        for i in range(12):
            r = result(i, 0.1 * i)
            sink.write(r, r.frame.image)
    with VideoSink(tmp_path / "b.mp4", ["cam"], {"cam": 10.0}, codec="mp4v") as sink:
        r = result(0, 0.0)
        sink.write(r, r.frame.image)
    with av.open(str(tmp_path / "a.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert decode_indices([f.to_ndarray(format="bgr24") for f in c.decode(video=0)]) == list(range(12))
    with av.open(str(tmp_path / "b.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
    with pytest.raises(UserError, match=r"output .*x\.mkv: must end in \.mp4 or \.avi"):
        VideoSink(tmp_path / "x.mkv", ["cam"])
    with pytest.raises(UserError, match="codec must be auto or one of h264, mp4v, mjpg, got 'vp9'"):
        VideoSink(tmp_path / "x.mp4", ["cam"], codec="vp9")


class SlowEncoder(VideoEncoder):
    delay = 0.03

    def write(self, image, t=None):
        time.sleep(self.delay)
        super().write(image, t)


@pytest.mark.timeout(60)
def test_encoder_behind_a_live_source_drops_and_never_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr("stream.sinks.video.VideoEncoder", SlowEncoder)
    n = 60
    with VideoSink(tmp_path / "live.mp4", ["cam"], {"cam": 25.0}, live={"cam": True}, queue_frames=4) as sink:
        t0 = time.perf_counter()
        for i in range(n):
            r = result(i, 0.04 * i)
            sink.write(r, r.frame.image)
        put_s = time.perf_counter() - t0
    written, dropped = sink.frames_written["cam"], sink.frames_dropped["cam"]
    assert written + dropped == n and dropped > 0
    assert put_s < n * SlowEncoder.delay / 2  # the pipeline thread did not wait for the encoder
    with av.open(str(tmp_path / "live.mp4")) as c:
        got = decode_indices([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])
    assert got == sorted(got) and len(got) == written  # the frames kept are in order


@pytest.mark.timeout(60)
def test_encoder_behind_a_file_source_blocks_and_loses_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr("stream.sinks.video.VideoEncoder", SlowEncoder)
    with VideoSink(tmp_path / "f.mp4", ["cam"], {"cam": 25.0}, queue_frames=2) as sink:
        for i in range(20):
            r = result(i, 0.04 * i)
            sink.write(r, r.frame.image)
    assert sink.frames_written["cam"] == 20 and sink.frames_dropped["cam"] == 0


def test_encoder_error_reaches_the_pipeline_thread(tmp_path, monkeypatch):
    def boom(self, image, t=None):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(encoder_mod.VideoEncoder, "write", boom)
    sink = VideoSink(tmp_path / "e.mp4", ["cam"], {"cam": 25.0})
    with pytest.raises(OSError, match="No space left"):
        for i in range(200):
            r = result(i, 0.04 * i)
            sink.write(r, r.frame.image)
            time.sleep(0.005)
    sink.close()  # reported once: close does not raise it again


# ---------------------------------------------------------------- continuous recording


def record_opts(tmp_path: Path, **kw) -> RecordOptions:
    return RecordOptions(dir=str(tmp_path / "rec"), **{"segment_s": 1.0, "max_size_mb": 0, "max_age_h": 0, **kw})


def check_index_agrees(root: Path) -> list:
    """Every row's file decodes to its frame count; every segment file on disk has a row."""
    idx = SegmentIndex(root)
    try:
        segs = idx.segments()
        for s in segs:
            assert s.status in ("complete", "interrupted"), s
            assert count_packets(root / s.path) == s.frames > 0, s
            assert (root / s.path).stat().st_size == s.bytes, s
        on_disk = sorted(str(p.relative_to(root)) for p in root.rglob("*.mp4"))
        assert on_disk == sorted(s.path for s in segs)
        return [(s, idx.events(s.id)) for s in segs]
    finally:
        idx.close()


def test_record_segments_roll_over_and_index_agrees(tmp_path):
    emitted: list[dict] = []
    sink = RecordSink(record_opts(tmp_path), ["rtsp://user:pw@cam/1"], {"rtsp://user:pw@cam/1": 10.0},
                      emit=emitted.append)
    sid = "rtsp://user:pw@cam/1"
    with sink:
        for i in range(35):  # 3.5 s at 10 fps, 1 s segments
            sink.write(result(i, 1000.0 + 0.1 * i, sid, nomask=12 <= i < 15), index_image(i))
    segs = check_index_agrees(tmp_path / "rec")
    assert [s.frames for s, _ in segs] == [10, 10, 10, 5]
    # names: source (redacted, file-safe) and UTC start; first frames of each segment are the right ones
    for k, (s, _) in enumerate(segs):
        assert s.path.startswith("rtsp_user_cam_1/rtsp_user_cam_1_2") and "pw" not in s.path
        with av.open(str(tmp_path / "rec" / s.path)) as c:
            first = next(c.decode(video=0)).to_ndarray(format="bgr24")
        assert decode_indices([first]) == [10 * k]
        assert s.source == "rtsp://user:***@cam/1"
    # the no-mask run that starts at frame 12 is an event of the second segment
    assert [e["frame_index"] for s, evs in segs for e in evs if e["type"] == "nomask"] == [12]
    assert [e["type"] for e in segs[1][1]] == ["nomask"]
    assert [e["state"] for e in emitted] == ["recording"]
    assert "pw" not in json.dumps(emitted)


def test_record_cuts_segments_at_an_outage(tmp_path):
    sid = "cam"
    with RecordSink(record_opts(tmp_path, segment_s=60), [sid], {sid: 10.0}, live={sid: True}) as sink:
        for i in range(8):
            sink.write(result(i, 1000.0 + 0.1 * i), index_image(i))
        sink.event(SourceEvent(sid, SourceState.DISCONNECTED, 1001.0, "read timeout"))
        sink.event(SourceEvent(sid, SourceState.CONNECTED, 1005.0, "back"))
        for i in range(8, 14):
            sink.write(result(i, 1005.0 + 0.1 * i), index_image(i))
    segs = check_index_agrees(tmp_path / "rec")
    assert [s.frames for s, _ in segs] == [8, 6]
    assert [e["state"] for e in segs[0][1]] == ["disconnected"]
    assert [e["state"] for e in segs[1][1]] == ["connected"]


def test_retention_deletes_the_oldest_when_the_size_cap_is_hit(tmp_path):
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (120, 160, 3), np.uint8) for _ in range(4)]  # incompressible: big segments
    opts = record_opts(tmp_path, segment_s=0.5, max_size_mb=0.6)
    with RecordSink(opts, ["cam"], {"cam": 10.0}) as sink:
        for i in range(80):
            im = noise[i % 4].copy()
            im[:40] = index_image(i)[:40]
            sink.write(result(i, 1000.0 + 0.1 * i), im)
    segs = check_index_agrees(tmp_path / "rec")
    total = sum(s.bytes for s, _ in segs)
    assert total <= 0.6e6
    starts = [s.start for s, _ in segs]
    assert len(segs) < 16 and starts == sorted(starts)
    # the kept segments are the newest ones: the last frame recorded is the last one written
    with av.open(str(tmp_path / "rec" / segs[-1][0].path)) as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert decode_indices([f[:40] for f in frames])[-1] == 79
    # and everything older than the first kept segment is gone (oldest deleted first)
    with av.open(str(tmp_path / "rec" / segs[0][0].path)) as c:
        first = decode_indices([next(c.decode(video=0)).to_ndarray(format="bgr24")[:40]])[0]
    assert first == 80 - 5 * len(segs)


def test_retention_by_age_and_recovery_of_an_interrupted_run(tmp_path):
    root = tmp_path / "rec"
    root.mkdir()
    old = root / "cam" / "cam_old.mp4"
    old.parent.mkdir()
    enc = VideoEncoder(old, (160, 120), 10.0)
    for i in range(5):
        enc.write(index_image(i))
    enc.close()
    crashed = root / "cam" / "cam_crashed.mp4"
    enc = VideoEncoder(crashed, (160, 120), 10.0, gop_s=0.5)
    for i in range(25):
        enc.write(index_image(i))
    enc.abort()  # never flushed: like a killed run
    idx = SegmentIndex(root)
    from stream.sinks.segment_index import Segment

    idx.finish(Segment("cam", "cam/cam_old.mp4", time.time() - 7200, time.time() - 7100, 5, old.stat().st_size, "complete"))
    idx.add(Segment("cam", "cam/cam_crashed.mp4", time.time() - 60))
    idx.add(Segment("cam", "cam/cam_deleted_by_hand.mp4", time.time() - 50))
    idx.close()
    orphan = root / "cam" / f"cam_{utc_stamp(time.time() - 30)}.mp4"  # a file the index never heard of
    enc = VideoEncoder(orphan, (160, 120), 10.0)
    for i in range(7):
        enc.write(index_image(i))
    enc.close()
    with RecordSink(record_opts(tmp_path, max_age_h=1.0), ["cam"]):
        pass
    segs = check_index_agrees(root)
    assert not old.exists()
    assert [(s.path, s.status, s.frames) for s, _ in segs][1:] == [(orphan.relative_to(root).as_posix(),
                                                                    "interrupted", 7)]
    assert segs[1][0].start == pytest.approx(time.time() - 30, abs=2)
    assert [(s.path, s.status) for s, _ in segs][:1] == [("cam/cam_crashed.mp4", "interrupted")]
    assert 20 <= segs[0][0].frames <= 25


def test_record_dir_errors_are_user_errors(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(UserError, match=r"record .*file/sub: cannot create the directory \(Not a directory\)"):
        RecordSink(RecordOptions(dir=str(f / "sub")), ["cam"])


@pytest.mark.parametrize(
    "section,bad,msg",
    [
        ({"record": {"segment_s": 0}}, "sinks.record.segment_s must be in [0.5, 86400] seconds, got 0.0", None),
        ({"record": {"codec": "vp9"}}, "sinks.record.codec must be one of h264, mp4v, mjpg, got 'vp9'", None),
        ({"clips": {"trigger": "always"}}, "sinks.clips.trigger must be one of auto, person, nomask_run", None),
        ({"clips": {"pre_rol_s": 1}}, "sinks.clips.pre_rol_s is not a known key (did you mean sinks.clips.pre_roll_s?)",
         None),
        ({"codec": "h265"}, "sinks.codec must be one of auto, h264, mp4v, mjpg, got 'h265'", None),
    ],
)
def test_config_errors_name_the_key(section, bad, msg):
    with pytest.raises(UserError) as ei:
        from_dict({"sinks": section}, "config x.yaml")
    assert bad in str(ei.value) and str(ei.value).startswith("config x.yaml: ")


# ---------------------------------------------------------------- event clips


def clip_frames(path: str) -> list[int]:
    with av.open(path) as c:
        return decode_indices([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])


def test_clip_holds_exactly_the_pre_and_post_roll(tmp_path):
    """8 fps; a no-mask run at frames 20..29; pre/post-roll 0.55 s (4 frames each side): frames 16..33."""
    ev: list[dict] = []
    opts = ClipOptions(dir=str(tmp_path / "clips"), pre_roll_s=0.55, post_roll_s=0.55, min_frames=3)
    with ClipSink(opts, ["cam"], {"cam": 8.0}, emit=ev.append) as sink:
        for i in range(60):
            r = result(i, 500.0 + 0.125 * i, nomask=20 <= i < 30 or i == 45)  # 45: a single frame, no clip
            sink.write(r, r.frame.image)
    starts = [e for e in ev if e["event"] == "start"]
    ends = [e for e in ev if e["event"] == "end"]
    assert len(starts) == len(ends) == 1
    assert starts[0]["trigger"] == "nomask_run" and starts[0]["frame_index"] == 20
    assert starts[0]["pre_roll_s"] == pytest.approx(0.5 + 2 * 0.125, abs=1e-3)  # 16 -> trigger frame 22
    assert ends[0]["frames"] == 18 and ends[0]["path"] == starts[0]["path"]
    assert clip_frames(starts[0]["path"]) == list(range(16, 34))
    lines = [json.loads(x) for x in (tmp_path / "clips" / "clips.jsonl").read_text().splitlines()]
    assert lines == ev


def test_clip_is_cut_at_max_length_and_the_next_starts(tmp_path):
    ev: list[dict] = []
    opts = ClipOptions(dir=str(tmp_path / "c"), pre_roll_s=0, post_roll_s=0.2, min_frames=2, max_clip_s=1.0)
    with ClipSink(opts, ["cam"], {"cam": 10.0}, emit=ev.append) as sink:
        for i in range(25):
            r = result(i, 0.1 * i, nomask=True)
            sink.write(r, r.frame.image)
    paths = [e["path"] for e in ev if e["event"] == "start"]
    assert len(paths) == 3
    got = [clip_frames(p) for p in paths]
    assert got[0][0] == 0 and sum(len(g) for g in got) == 25 and [i for g in got for i in g] == list(range(25))


def test_person_decisions_trigger_clips_once_they_arrive(tmp_path):
    ev: list[dict] = []
    opts = ClipOptions(dir=str(tmp_path / "c"), pre_roll_s=0.55, post_roll_s=0.55, min_frames=2)
    with ClipSink(opts, ["cam"], {"cam": 8.0}, emit=ev.append) as sink:
        for i in range(40):
            r = result(i, 0.125 * i, nomask=True)  # every frame no mask: runs would trigger...
            if i == 1:  # ...but person events arrive first (auto mode switches to persons)
                sink.person({"type": "person", "event": "new", "source": "cam", "person_id": 3, "frame_index": 1,
                             "time": None, "label": None})
            sink.write(r, r.frame.image)
            if i == 20:
                from stream.sinks.base import wall_time

                sink.person({"type": "person", "event": "decided", "source": "cam", "person_id": 3,
                             "frame_index": 20, "time": wall_time(0.125 * 20), "label": "without_mask"})
    starts = [e for e in ev if e["event"] == "start"]
    assert [(e["trigger"], e["person_id"], e["frame_index"]) for e in starts] == [("person", 3, 20)]
    assert clip_frames(starts[0]["path"]) == list(range(16, 25))


def test_sink_threads_end_on_close(tmp_path):
    before = set(threading.enumerate())
    with RecordSink(record_opts(tmp_path), ["a", "b"]) as rs, ClipSink(ClipOptions(dir=str(tmp_path / "c")), ["a"]) as cs:
        for i in range(3):
            rs.write(result(i, float(i), "a"), index_image(i))
            cs.write(result(i, float(i), "a"), index_image(i))
    time.sleep(0.1)
    assert [t for t in threading.enumerate() if t not in before and t.is_alive()] == []


def test_live_source_clip_keeps_its_whole_pre_roll(tmp_path):
    """The pre-roll goes to the writer as one item: a small live queue does not drop any of it."""
    ev: list[dict] = []
    opts = ClipOptions(dir=str(tmp_path / "c"), pre_roll_s=2.55, post_roll_s=0.3, min_frames=2, queue_frames=2)
    with ClipSink(opts, ["cam"], {"cam": 8.0}, live={"cam": True}, emit=ev.append) as sink:
        for i in range(30):
            r = result(i, 0.125 * i, nomask=i in (24, 25))
            sink.write(r, r.frame.image)
    start = next(e for e in ev if e["event"] == "start")
    assert clip_frames(start["path"])[:22] == list(range(4, 26))  # 2.5 s = 20 frames before frame 24, then 24, 25


def test_build_sinks_wires_record_and_clips_to_the_events_file_and_live_sources(tmp_path):
    """Built from the config by the registry: after the events sink (so closed before it), with its ``emit``
    and which sources are live; a recording event written through that emit lands in the events file."""
    from stream.config import load_config
    from stream.pipeline import build_sinks
    from stream.sinks import EventsSink

    ev_path = tmp_path / "ev.jsonl"
    cfg = load_config(None, {"sinks": {"output": str(tmp_path / "o.mp4"), "codec": "mp4v", "events": str(ev_path),
                                       "record": {"dir": str(tmp_path / "rec")}, "clips": {"dir": str(tmp_path / "c")}}})
    sinks = build_sinks(cfg, ["cam", "file"], {"cam": 10.0, "file": 10.0}, live={"cam": True, "file": False})
    try:
        assert [type(s) for s in sinks] == [VideoSink, EventsSink, RecordSink, ClipSink]
        video, events, rec, clips = sinks
        assert video.codec == "mp4v" and rec.emit == events.emit and clips.emit == events.emit
        for s in (video, rec):
            assert {sid: th.block for sid, th in s._threads.items()} == {"cam": False, "file": True}
        assert {sid: s.thread.block for sid, s in clips._src.items()} == {"cam": False, "file": True}
        rec.report("cam", "error", "disk full")
        rec.write(result(0, 0.0), index_image(0))  # drains the queued state change into the events file
    finally:
        for s in reversed(sinks):
            s.close()
    lines = [json.loads(x) for x in ev_path.read_text().splitlines()]
    assert {"type": "recording", "source": "cam", "state": "error", "message": "disk full"}.items() <= next(
        e for e in lines if e["type"] == "recording").items()
    assert load_config(None, {}).sinks.options("record").dir is None  # off by default: no sink
    assert [type(s) for s in build_sinks(load_config(None, {}), ["cam"], {"cam": None})] == []
