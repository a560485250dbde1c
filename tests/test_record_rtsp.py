"""``maskstream run --record`` on the loopback RTSP server (tools/rtsp_server.py) across a server crash
and restart: segments on both sides of the outage, none spanning it, every segment readable, and
the index agreeing with the files. Skips with the reason when GStreamer's RTSP server is absent."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.sinks.segment_index import SegmentIndex, count_packets  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint  # noqa: E402
from tools.rtsp_server import RtspServerProcess, free_port, unavailable_reason  # noqa: E402

pytestmark = pytest.mark.rtsp
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    return env


def read_events(path: Path) -> list[dict]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass  # the line being written
    return out


def wait_for(pred, timeout: float, what: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if proc.poll() is not None:
            raise AssertionError(f"run ended while waiting for {what}: {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.timeout(200)
def test_record_across_an_rtsp_server_restart(tmp_path):
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"RTSP server unavailable: {reason}")
    ckpt = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources: {open_timeout: 5.0, read_timeout: 2.0, reconnect_initial: 0.2, reconnect_max: 0.5}\n"
        "sinks: {record: {segment_s: 1.0}}\n"
    )
    rec, ev = tmp_path / "rec", tmp_path / "ev.jsonl"
    server = RtspServerProcess(free_port(), ["--fps", "25"])
    server.start()
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--no-progress", "--config", str(cfg),
           "--checkpoint", str(ckpt), "--source", server.url, "--record", str(rec), "--events", str(ev),
           "--batch-size", "2"]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def frames_since(t: float) -> int:
        return sum(1 for e in read_events(ev) if e["type"] == "frame" and e["time"] >= t)

    def state_since(state: str, t: float) -> bool:
        return any(e["type"] == "state" and e["state"] == state and e["time"] >= t for e in read_events(ev))

    try:
        wait_for(lambda: frames_since(0) >= 60, 90, "60 frames before the outage", p)  # > 2 segments
        killed_at = time.time()
        server.kill()
        wait_for(lambda: state_since("reconnecting", killed_at), 30, "reconnecting", p)
        time.sleep(1.5)  # stay down a while
        server.start()
        restarted_at = time.time()
        wait_for(lambda: state_since("connected", restarted_at), 40, "connected again", p)
        wait_for(lambda: frames_since(restarted_at) >= 60, 60, "60 frames after the restart", p)
        p.send_signal(signal.SIGTERM)  # a clean stop: the open segment is closed and indexed
        _, err = p.communicate(timeout=40)
    finally:
        server.kill()
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, err[-2000:]

    idx = SegmentIndex(rec)
    try:
        segs = idx.segments()
        seg_events = {s.id: idx.events(s.id) for s in segs}
    finally:
        idx.close()
    # the index agrees with the files: same set, every one readable with the indexed frame count
    assert sorted(str(q.relative_to(rec)) for q in rec.rglob("*.mp4")) == sorted(s.path for s in segs)
    for s in segs:
        assert s.status == "complete" and count_packets(rec / s.path) == s.frames > 0, s
    shown = [(round(s.start - killed_at, 2), round(s.end - killed_at, 2)) for s in segs]
    before = [s for s in segs if s.start < killed_at]
    after = [s for s in segs if s.start >= restarted_at]
    assert len(before) >= 2 and len(after) >= 2, shown
    assert len(before) + len(after) == len(segs), shown
    assert all(s.end < restarted_at for s in before), shown  # no segment spans the outage
    # the last segment before the outage holds the disconnection; the first after it the reconnection
    assert "disconnected" in [e.get("state") for e in seg_events[before[-1].id]]
    assert "connected" in [e.get("state") for e in seg_events[after[0].id]]
    # recorded frames match the processed ones (a live source: the writer may drop a few, never invent any)
    n_frames = sum(1 for e in read_events(ev) if e["type"] == "frame")
    assert 0.9 * n_frames <= sum(s.frames for s in segs) <= n_frames
