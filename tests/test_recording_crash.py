"""``maskstream run --output --record`` killed with SIGKILL mid-way (an OOM kill, a power cut): the video
plays up to the last couple of seconds, the frames in it are the right ones, and the recording segment
being written is re-indexed with its playable frames on the next start.

The input clip's frame i shows i as a row of blocks (``tests/_recording_fakes.py``); the heatmap is
blended over it (boxes and HUD are off so nothing is drawn over the blocks), so every decoded
frame says which input frame it is, and the events say which frames were processed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.sinks.segment_index import SegmentIndex  # noqa: E402
from tests._recording_fakes import decode_indices, write_index_video  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def frame_events(path: Path) -> list[dict]:
    """Frame events of a JSON Lines file that may end in a half-written line."""
    out = []
    for line in path.read_text().splitlines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if obj.get("type") == "frame":
            out.append(obj)
    return out


@pytest.mark.timeout(180)
def test_sigkill_leaves_a_playable_video_of_the_right_frames(tmp_path):
    ckpt = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    clip = write_index_video(tmp_path / "in.avi", n=500, size=(320, 240), fps=FPS)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "sources: {realtime: true}\n"  # paced at 25 fps: the kill lands mid-way through the 20 s clip
        "overlay: {heatmap: true, boxes: false, hud: false}\n"
    )
    out, ev, rec = tmp_path / "out.mp4", tmp_path / "ev.jsonl", tmp_path / "rec"
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--no-progress", "--config", str(cfg),
           "--checkpoint", str(ckpt), "--source", str(clip), "--output", str(out), "--events", str(ev),
           "--record", str(rec), "--batch-size", "2"]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            if ev.exists() and len(frame_events(ev)) >= 125:  # 5 s of video processed
                break
            time.sleep(0.1)
        assert p.poll() is None, p.communicate()[1]
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == -signal.SIGKILL
    events = frame_events(ev)
    n_events = len(events)
    assert [e["frame_index"] for e in events] == list(range(n_events))
    assert n_events < 500  # killed mid-way, not at the end

    with av.open(str(out)) as c:
        st = c.streams.video[0]
        assert st.codec_context.name == "h264"
        decoded = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    got = decode_indices(decoded)
    print(f"\nSIGKILL after {n_events} frame events: {len(got)} frames play ({n_events - len(got)} lost, "
          f"{(n_events - len(got)) / FPS:.2f} s); file {out.stat().st_size} bytes")
    assert len(got) >= n_events - 2 * FPS  # at most the last 2 s are lost
    # the right frames: frame k of the video is input frame k, for every decoded frame ...
    assert got == list(range(len(got)))
    # ... and it is the frame the events describe at that position
    for k in (0, len(got) // 3, len(got) // 2, len(got) - 1):
        if k < n_events:
            assert got[k] == events[k]["frame_index"]

    # --record survived too: the next start re-indexes the segment the killed run was writing
    idx = SegmentIndex(rec)
    try:
        assert [s.status for s in idx.segments()] == ["recording"]
        idx.recover()
        segs = idx.segments()
    finally:
        idx.close()
    assert [s.status for s in segs] == ["interrupted"]
    with av.open(str(rec / segs[0].path)) as c:
        rec_got = decode_indices([f.to_ndarray(format="bgr24") for f in c.decode(video=0)])
    assert rec_got == list(range(segs[0].frames)) and segs[0].frames >= n_events - 2 * FPS
