"""``maskstream run`` end to end as a subprocess: help, the default sample run, and Ctrl-C / SIGTERM
leaving a playable video, closed events and a printed summary."""

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
from stream.cli.main import build_parser  # noqa: E402
from tests._stream_fakes import count_frames, save_seeded_checkpoint, write_video  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64)


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def test_help_documents_every_option():
    sub = build_parser()._subparsers._group_actions[0].choices["run"]  # noqa: SLF001
    text = sub.format_help()
    for opt in (
        "--source",
        "--config",
        "--mode",
        "--method",
        "--output",
        "--codec",
        "--record",
        "--clips",
        "--events",
        "--snapshots",
        "--no-display",
        "--checkpoint",
        "--device",
        "--batch-size",
        "--max-frames",
        "--backend",
        "--loop",
    ):
        assert opt in text
    for action in sub._actions:  # noqa: SLF001
        assert action.help and "(default: None)" not in text


@pytest.mark.timeout(120)
def test_default_run_on_sample_clip(tmp_path, ckpt):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "stream.cli.main",
            "run",
            "--no-display",
            "--checkpoint",
            str(ckpt),
            "--max-frames",
            "12",
            "--batch-size",
            "4",
            "--json-summary",
            "out/summary.json",
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr
    assert "maskstream run summary" in proc.stdout and "frames   in 12  out 12" in proc.stdout
    assert count_frames(tmp_path / "out" / "annotated.mp4") == 12
    lines = (tmp_path / "out" / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["frame_index"] for x in lines if '"type":"frame"' in x] == list(range(12))
    s = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert s["frames_out"] == 12 and s["latency_p95_ms"] >= s["latency_p50_ms"] > 0


@pytest.mark.timeout(150)
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 0)])
def test_signal_leaves_playable_video(tmp_path, ckpt, sig, code):
    clip = write_video(tmp_path / "long.avi", n=40, size=(320, 240))
    out, ev = tmp_path / "o.mp4", tmp_path / "ev.jsonl"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stream.cli.main",
            "run",
            "--no-display",
            "--no-progress",
            "--loop",
            "--checkpoint",
            str(ckpt),
            "--source",
            str(clip),
            "--output",
            str(out),
            "--events",
            str(ev),
            "--batch-size",
            "2",
        ],
        cwd=tmp_path,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 100
        while time.monotonic() < deadline:  # wait until frames flow (events are flushed every second)
            if ev.exists() and ev.read_text().count('"type":"frame"') >= 5:
                break
            if p.poll() is not None:
                break
            time.sleep(0.2)
        assert p.poll() is None, p.communicate()[1]
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=40)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == code, stderr
    assert "maskstream run summary" in stdout and ("interrupted" in stdout or "terminated" in stdout)
    n = count_frames(out)
    assert n > 0
    frames = [json.loads(x) for x in ev.read_text().splitlines() if '"type":"frame"' in x]
    assert len(frames) == n  # every rendered frame is in both the video and the events
    assert "Traceback" not in stderr
