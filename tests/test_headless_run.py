"""``maskstream run --serve`` end to end as a subprocess: /metrics parsed by prometheus_client's own
parser while running and at the end (counters agree with the run summary), and a source URL with a
password never appears in any page, JSON answer, metric, event or log line."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tests._headless import free_port, start_run, stop_run  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint, write_video  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_seeded_checkpoint(tmp_path_factory.mktemp("ck") / "m.pt", input_size=64)


def _families(text: str) -> dict:
    from prometheus_client.parser import text_string_to_metric_families

    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(fams, name, **labels):
    return fams[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_agree_with_the_summary(tmp_path, ckpt):
    clip = write_video(tmp_path / "clip.avi", n=60)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  fps: 30\nsinks:\n  metrics:\n    textfile: out/metrics.prom\n")
    proc, url = start_run(["--checkpoint", str(ckpt), "--source", str(clip), "--config", str(cfg),
                           "--json-summary", "out/summary.json", "--events", "out/ev.jsonl"], tmp_path)
    live = None
    try:
        for _ in range(100):
            r = httpx.get(url + "/metrics", timeout=5)
            if r.status_code == 200 and "maskstream_frames_out_total" in r.text:
                live = _families(r.text)  # parsed while running
                if sum(v for (n, _), v in live.items() if n == "maskstream_frames_out_total") > 0:
                    break
        assert r.headers["content-type"].startswith("text/plain; version=")
        proc.wait(120)  # to the end of its input
    finally:
        code, _, err = stop_run(proc, signal.SIGTERM)
    assert code == 0, err
    summary = json.loads((tmp_path / "out/summary.json").read_text())
    assert live is not None
    fams = _families((tmp_path / "out/metrics.prom").read_text())
    sid = str(clip)
    out = _value(fams, "maskstream_frames_out_total", source=sid)
    assert out == summary["frames_out"] and out > 0
    assert _value(fams, "maskstream_frames_skipped_total", source=sid) == summary["frames_skipped"]
    assert _value(fams, "maskstream_frames_dropped_total", source=sid) == summary["frames_dropped"]
    assert summary["stopped_by"] == "end of input"
    assert _value(fams, "maskstream_frames_in_total", source=sid) == summary["frames_in"] == 60
    for label, n in summary["detection_classes"].items():
        assert _value(fams, "maskstream_boxes_total", source=sid, label=label) == n
    for label, n in summary["frame_classes"].items():
        if n:
            assert _value(fams, "maskstream_frame_labels_total", source=sid, label=label) == n
    assert _value(fams, "maskstream_latency_seconds_count", source=sid) == summary["frames_out"]
    assert _value(fams, "maskstream_latency_seconds_bucket", source=sid, le="+Inf") == summary["frames_out"]
    live_out = _value(live, "maskstream_frames_out_total", source=sid)
    assert 0 < live_out <= out


def test_password_never_appears_anywhere(tmp_path, ckpt):
    port = free_port()  # nothing listens there: the camera keeps reconnecting
    secret = f"rtsp://admin:hunter2@127.0.0.1:{port}/live?token=s3cr3t"
    clip = write_video(tmp_path / "clip.avi", n=20)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  open_timeout: 1.0\n  reconnect_initial: 0.2\n  reconnect_max: 0.5\n  loop: true\n"
                   "  fps: 20\nsinks:\n  alerts:\n    source_down_s: 0.5\n    webhook:\n"
                   f"      url: http://127.0.0.1:{free_port()}/hook?token=hook-s3cr3t\n      timeout_s: 0.5\n"
                   "    flush_s: 1.0\n")
    proc, url = start_run(["--checkpoint", str(ckpt), "--source", secret, "--source", str(clip), "--config",
                           str(cfg), "--events", "out/ev.jsonl", "-o", "out/a.avi"], tmp_path)
    bodies = {}
    try:
        c = httpx.Client(base_url=url, timeout=5)
        import time

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            st = c.get("/api/status").json()
            states = {s["state"] for s in st["sources"]}
            if "reconnecting" in states and any(s["frames_out"] > 5 for s in st["sources"]):
                break
            time.sleep(0.3)
        time.sleep(1.0)  # the source-down alert fires (to a webhook nobody answers)
        st = c.get("/api/status").json()
        for ep in ["/", "/api/status", "/api/people", "/api/events?since=0", "/metrics"] + [
            s["mjpeg"].replace(".mjpg", ".jpg") for s in st["sources"]
        ]:
            r = c.get(ep)
            bodies[ep] = r.content
        assert b"admin:***@127.0.0.1" in bodies["/api/status"]
        assert b"reconnecting" in bodies["/api/status"]
        assert b'"kind":"source_down"' in bodies["/api/events?since=0"]  # the alert is on the page's log too
    finally:
        code, out, err = stop_run(proc, signal.SIGINT)
    assert code == 130
    texts = list(bodies.values()) + [out.encode(), err.encode(), (tmp_path / "out/ev.jsonl").read_bytes()]
    for t in texts:
        assert b"hunter2" not in t and b"s3cr3t" not in t
    import re

    # the camera stayed down > alerts.source_down_s: a source_down alert to a webhook nobody answers,
    # reported at shutdown as not delivered
    assert re.search(r"alerts: raised [1-9]\d*; webhook: sent 0, NOT DELIVERED [1-9]", err), err[-2000:]


@pytest.mark.parametrize("serve, message", [
    ("0.0.0.0:0", "web.host 0.0.0.0 is not a loopback address"),
    ("abc", "--serve 'abc': expected [HOST:]PORT"),
])
def test_cli_refuses_a_remote_bind_unless_asked(tmp_path, serve, message):
    import subprocess

    from tests._headless import run_env

    proc = subprocess.run([sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--serve", serve],
                          cwd=tmp_path, env=run_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("maskstream: error: ")
    assert message in proc.stderr and "Traceback" not in proc.stderr
