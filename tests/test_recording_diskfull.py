"""A full disk under ``--record``: detection goes on, a ``recording`` event says why recording stopped,
and recording resumes by itself when space returns; the index still agrees with the files.

The recordings live on a 2 MB tmpfs that the test mounts (root, ``mount -t tmpfs``) and fills with a
file; where mounting is not allowed, ENOSPC is injected at the writer instead (the test prints
which one ran)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import from_dict  # noqa: E402
from stream.frames import Frame  # noqa: E402
from stream.pipeline import build_pipeline  # noqa: E402
from stream.sinks.record import RecordSink  # noqa: E402
from stream.sinks.segment_index import SegmentIndex, count_packets  # noqa: E402
from tests._recording_fakes import index_image  # noqa: E402
from tests._stream_fakes import FakeSource, save_seeded_checkpoint, torch_backend  # noqa: E402

N = 260
FILL_AT, FREE_AT = 40, 130


def mount_tmpfs(path: Path, size: str = "2m") -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def fill(path: Path) -> None:
    """Write ``path`` until the file system is full."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    small = b"\0" * 512
    with open(path, "ab", buffering=0) as f:  # the last few blocks too
        try:
            while True:
                f.write(small)
        except OSError:
            pass


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    mounted = mount_tmpfs(mnt)
    yield mnt, mounted
    if mounted:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.timeout(180)
def test_disk_full_detection_goes_on_and_recording_resumes(tmp_path, small_disk, monkeypatch):
    mnt, mounted = small_disk
    rec_dir, ev_path = mnt / "rec", tmp_path / "ev.jsonl"
    backend = torch_backend(save_seeded_checkpoint(tmp_path / "m.pt", input_size=64))
    rng = np.random.default_rng(0)
    frames = []
    for i in range(N):
        im = index_image(i, (320, 240))
        im[40:80, :80] = rng.integers(0, 256, (40, 80, 3), np.uint8)  # some noise: realistic segment sizes
        frames.append(Frame("cam", i, im, 0.0))
    src = FakeSource(frames, source_id="cam", live=True, delay=0.02)
    cfg = from_dict(
        {
            "sinks": {"display": False, "events": str(ev_path),
                      "record": {"dir": str(rec_dir), "segment_s": 1.0, "retry_s": 0.3, "max_size_mb": 0}},
            "run": {"progress": False},
            "worker": {"batch_size": 2, "batch_timeout_ms": 5},
            "overlay": {"heatmap": False, "boxes": False, "hud": False},
        }
    )
    pipe = build_pipeline(cfg, sources=[src], backend=backend, specs=["cam"])
    filler = mnt / "filler"
    full = {"on": False}
    if not mounted:  # inject ENOSPC at the writer (no tmpfs here)
        import stream.sinks.record as record_mod

        real = record_mod.VideoEncoder.write

        def write(self, image, t=None):
            if full["on"]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real(self, image, t)

        monkeypatch.setattr(record_mod.VideoEncoder, "write", write)

    def on_result(result, latency):
        if result.frame.index == FILL_AT:
            full["on"] = True
            if mounted:
                fill(filler)
        elif result.frame.index == FREE_AT:
            full["on"] = False
            if mounted:
                filler.unlink()

    pipe.on_result = on_result
    summary = pipe.run()
    print(f"\ndisk full by {'a full 2 MB tmpfs' if mounted else 'ENOSPC injected at the writer'}")

    # detection never stopped
    assert summary.frames_out == N and summary.error is None
    # the recording state was reported: recording, error (disk full), recording again
    events = [json.loads(x) for x in ev_path.read_text().splitlines()]
    rec_events = [e for e in events if e["type"] == "recording"]
    assert [e["state"] for e in rec_events] == ["recording", "error", "recording"], rec_events
    assert "No space left on device" in rec_events[1]["message"]
    assert rec_events[2]["message"].startswith("resumed")
    frames_at = {e["frame_index"]: e["time"] for e in events if e["type"] == "frame"}
    assert rec_events[2]["time"] > frames_at[FREE_AT]
    sink = next(s for s in pipe.sinks if isinstance(s, RecordSink))
    assert sink.stats["cam"].lost > 0 and sink.stats["cam"].errors >= 1

    print(sink.stats["cam"])
    # the index agrees with the files, and there are segments before the disk filled and after it was freed
    idx = SegmentIndex(rec_dir)
    try:
        segs = idx.segments()
    finally:
        idx.close()
    for s in segs:
        assert s.status in ("complete", "truncated")
        assert count_packets(rec_dir / s.path) == s.frames > 0, s
    assert sorted(str(p.relative_to(rec_dir)) for p in rec_dir.rglob("*.mp4")) == sorted(s.path for s in segs)
    assert any(s.start < frames_at[FILL_AT] for s in segs)
    assert any(s.start > frames_at[FREE_AT] and s.status == "complete" for s in segs)


def test_recovery_is_reported_when_segments_are_shorter_than_a_keyframe_interval(tmp_path, monkeypatch):
    """A source slower than its nominal 25 fps (10 frames per 1 s segment, fewer than the 26 a keyframe
    interval needs): each resumed segment closes complete before its first fragment would confirm the
    recovery, and that close must say ``resumed`` (under load the disk-full test's source drops below
    26 frames a segment, and the run used to end without the event)."""
    import stream.sinks.record as record_mod
    from stream.sinks.record import RecordOptions

    full = {"on": False}
    real = record_mod.VideoEncoder.write

    def write(self, image, t=None):
        if full["on"]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(self, image, t)

    monkeypatch.setattr(record_mod.VideoEncoder, "write", write)
    events: list[dict] = []
    sink = RecordSink(RecordOptions(dir=str(tmp_path / "rec"), segment_s=1.0, retry_s=0.1, max_size_mb=0), ["cam"],
                      fps={"cam": 25.0}, live={"cam": False}, emit=events.append)
    rec = sink._rec["cam"]  # the writer thread's handler, driven here in order (no thread timing)
    import time as _time

    t0 = _time.time()  # capture times now (older ones would fall to the 168 h retention)
    images = [index_image(i, (160, 120)) for i in range(40)]
    for i in range(5):
        rec.handle(("frame", t0 + i / 10, images[i]))
    full["on"] = True
    rec.handle(("frame", t0 + 0.5, images[5]))
    full["on"] = False
    _time.sleep(0.15)  # past retry_s: the next frame tries a new segment
    for i in range(6, 40):  # 3.4 s at 10 fps: segments of 10 frames, each closed complete
        rec.handle(("frame", t0 + i / 10, images[i]))
    sink.close()
    states = [(e["state"], e["message"].split(" ")[0].rstrip(":")) for e in events]
    assert states == [("recording", "segment"), ("error", "No"), ("recording", "resumed")], events
    assert "No space left on device" in events[1]["message"]
    idx = SegmentIndex(tmp_path / "rec")
    try:
        segs = idx.segments()
    finally:
        idx.close()
    resumed = events[2]["message"].split(": ", 1)[1]
    assert any(s.path == resumed and s.status == "complete" and s.frames == 10 for s in segs), (resumed, segs)
