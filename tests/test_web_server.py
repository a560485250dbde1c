"""The web view's server in-process: security (token on every endpoint, no URL credential anywhere,
loopback only unless asked) and the MJPEG contract (newest frame, fps cap, a stalled viewer never slows
the pipeline, encoding only while someone watches, viewers closed at shutdown)."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.config import load_config  # noqa: E402
from stream.errors import UserError  # noqa: E402
from stream.frames import SourceEvent, SourceState  # noqa: E402
from stream.results import Detection, FrameResult  # noqa: E402
from stream.sinks.metrics import MetricsSink  # noqa: E402
from stream.sinks.web import WebSink  # noqa: E402
from stream.web.options import MetricsOptions, WebOptions  # noqa: E402
from tests._stream_fakes import make_frame  # noqa: E402

pytestmark = pytest.mark.timeout(60)
SECRET_URL = "rtsp://admin:hunter2@10.0.0.7:554/live?token=s3cr3t"
ENDPOINTS = ["/", "/api/status", "/api/people", "/api/events?since=0", "/metrics", "/sources/{key}.mjpg",
             "/sources/{key}.jpg", "/snapshots/1.jpg"]


def _result(sid, i, label="without_mask", h=120, w=160):
    f = make_frame(sid, i, h=h, w=w)
    return FrameResult(f, label, 0.9, (0.1, 0.9), (Detection((10, 10, 60, 70), label, 1, 0.9),), None)


def _feed(sinks, sid, n, start=0):
    for i in range(start, start + n):
        r = _result(sid, i)
        img = np.full((120, 160, 3), (i * 37) % 256, np.uint8)
        for s in sinks:
            s.write(r, img)


def _web(token=None, sid=SECRET_URL, **kw):
    m = MetricsSink(MetricsOptions(), [sid])
    w = WebSink(WebOptions(enabled=True, port=0, **kw), [sid], registry=m.registry, token=token, announce=False)
    return m, w


def test_token_required_on_every_endpoint():
    m, w = _web(token="tok-123")
    with m, w:
        _feed([m, w], SECRET_URL, 8)
        key = w.live.view(SECRET_URL).key
        c = httpx.Client(base_url=w.url, timeout=5)
        for ep in ENDPOINTS:
            url = ep.format(key=key)
            r = c.get(url)
            assert r.status_code == 401, url
            assert "tok-123" not in r.text and r.headers["www-authenticate"].startswith("Bearer")
            assert c.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401, url
        ok = {"Authorization": "Bearer tok-123"}
        for ep in ENDPOINTS:
            if ep.endswith(".mjpg"):
                with c.stream("GET", ep.format(key=key), headers=ok) as r:
                    assert r.status_code == 200
                continue
            assert c.get(ep.format(key=key), headers=ok).status_code == 200, ep
        # a browser: the login form, then a cookie that is not the token itself
        assert c.get("/", headers={"Accept": "text/html"}).text.count('name="token"') == 1
        assert c.post("/login", data={"token": "nope"}).status_code == 401
        r = c.post("/login", data={"token": "tok-123"})
        assert r.status_code == 303 and "tok-123" not in r.headers["set-cookie"]
        assert c.get("/api/status").status_code == 200  # the cookie now
        page = c.get("/").text
        assert "tok-123" not in page


def test_token_file_and_env(tmp_path, monkeypatch):
    from stream.web.auth import load_token

    monkeypatch.delenv("MASKSTREAM_TOKEN", raising=False)
    assert load_token(None) is None
    f = tmp_path / "tok"
    f.write_text("file-token\n")
    assert load_token(str(f)) == "file-token"
    monkeypatch.setenv("MASKSTREAM_TOKEN", "env-token")
    assert load_token(str(f)) == "env-token"
    monkeypatch.delenv("MASKSTREAM_TOKEN")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="sinks.web.token_file .*empty$"):
        load_token(str(tmp_path / "empty"))
    with pytest.raises(UserError, match="sinks.web.token_file .*cannot be read"):
        load_token(str(tmp_path / "missing"))


def test_no_credential_in_any_page_json_or_metric():
    m, w = _web()
    with m, w:
        w.event(SourceEvent(SECRET_URL, SourceState.RECONNECTING, time.monotonic(),
                            f"cannot open {SECRET_URL}", attempt=2))
        _feed([m, w], SECRET_URL, 8)
        w.person({"type": "person", "event": "decided", "source": SECRET_URL, "person_id": 4, "frame_index": 7,
                  "time": time.time(), "label": "without_mask", "confidence": 0.8, "frames_seen": 6,
                  "snapshot": None})
        key = w.live.view(SECRET_URL).key
        c = httpx.Client(base_url=w.url, timeout=5)
        bodies = [c.get(ep.format(key=key)).text for ep in ENDPOINTS if not ep.endswith((".mjpg", ".jpg"))]
        assert "admin:***@10.0.0.7" in bodies[1]  # the source is there, redacted
        for b in bodies:
            assert "hunter2" not in b and "s3cr3t" not in b
        assert "hunter2" not in key and "s3cr3t" not in key


def test_refuses_non_loopback_bind_unless_asked():
    with pytest.raises(UserError, match="not a loopback address"):
        load_config(None, {"sinks": {"web": {"enabled": True, "host": "0.0.0.0", "port": 0}}})
    # asked: it binds (to every interface) and still answers on loopback
    m, w = _web(host="0.0.0.0", allow_remote=True)
    with w:
        assert httpx.get(f"http://127.0.0.1:{w.server.port}/api/status", timeout=5).status_code == 200


def test_busy_port_is_a_clear_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        w = WebSink(WebOptions(enabled=True, port=port), ["a"], announce=False)
        with pytest.raises(UserError, match=f"web: cannot listen on 127.0.0.1:{port}"):
            w.__enter__()


class Parts:
    """Reads JPEG parts of one multipart response (keeps its iterator and buffer between calls)."""

    def __init__(self, resp) -> None:
        self.it = resp.iter_bytes()
        self.buf = b""

    def read(self, n, timeout=10.0):
        """The next n parts as (arrival time, bytes) (fewer when ``timeout`` passes)."""
        parts, deadline = [], time.monotonic() + timeout
        while len(parts) < n and time.monotonic() < deadline:
            head = self.buf.find(b"\r\n\r\n")
            if head >= 0 and self.buf.startswith(b"--frame"):
                length = int(self.buf[:head].split(b"Content-Length: ")[1].split(b"\r\n")[0])
                end = head + 4 + length + 2
                if len(self.buf) >= end:
                    parts.append((time.monotonic(), self.buf[head + 4:head + 4 + length]))
                    self.buf = self.buf[end:]
                    continue
            chunk = next(self.it, None)
            if chunk is None:
                break
            self.buf += chunk
        return parts


def test_mjpeg_newest_frame_fps_cap_and_encoding_only_while_watched():
    import cv2

    m, w = _web(mjpeg_fps=5.0, mjpeg_width=80)
    sid = "cam"
    with w:
        key = w.live.view(sid).key
        slot = w.live.slots[key]
        _feed([w], sid, 30)
        assert slot.encoded == 0  # nobody watches: nothing encoded
        c = httpx.Client(base_url=w.url, timeout=10)
        with c.stream("GET", f"/sources/{key}.mjpg") as r:
            assert r.headers["content-type"] == "multipart/x-mixed-replace; boundary=frame"
            parts = Parts(r)
            first = parts.read(1)
            im = cv2.imdecode(np.frombuffer(first[0][1], np.uint8), cv2.IMREAD_COLOR)
            assert im.shape == (60, 80, 3)  # mjpeg_width
            assert abs(int(im.mean()) - (29 * 37) % 256) <= 3  # the newest frame (index 29)
            stop = time.monotonic() + 2.5
            i = 30
            got = []
            import threading

            def produce():
                nonlocal i
                while time.monotonic() < stop:
                    _feed([w], sid, 1, i)
                    i += 1
                    time.sleep(0.01)  # ~100 fps offered

            t = threading.Thread(target=produce)
            t.start()
            got = parts.read(12, timeout=2.5)
            t.join()
        gaps = np.diff([g[0] for g in got])
        assert len(got) >= 5 and gaps.min() > 0.12  # capped at 5 fps (0.2 s), not 100
        assert slot.encoded <= len(got) + 2  # one encode per frame served, not per frame produced
        time.sleep(0.6)
        assert slot.viewers == 0
        n = slot.encoded
        _feed([w], sid, 20, 1000)
        time.sleep(0.3)
        assert slot.encoded == n  # viewer gone: encoding stopped


def test_stalled_viewer_never_slows_the_pipeline_and_is_closed_at_shutdown():
    m, w = _web(mjpeg_fps=50.0, mjpeg_width=0)
    sid = "cam"
    big = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)  # ~incompressible JPEGs
    with w:
        key = w.live.view(sid).key
        w.write(_result(sid, 0), big)
        stalled = socket.create_connection(("127.0.0.1", w.server.port), 5)
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.sendall(f"GET /sources/{key}.mjpg HTTP/1.1\r\nHost: x\r\n\r\n".encode())  # and never reads
        time.sleep(0.5)
        t0 = time.perf_counter()
        for i in range(300):
            w.write(_result(sid, i + 1), big)
        per_write = (time.perf_counter() - t0) / 300
        assert per_write < 0.005, f"write() took {per_write * 1000:.1f} ms with a stalled viewer"
        # a healthy viewer still gets the newest frames while the stalled one sits there
        with httpx.Client(base_url=w.url, timeout=10).stream("GET", f"/sources/{key}.mjpg") as r:
            parts = Parts(r)
            assert len(parts.read(1)) == 1
            w.write(_result(sid, 999), big)
            assert len(parts.read(1)) == 1
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 8.0  # shutdown is bounded even with a stalled viewer
    stalled.close()


def test_shutdown_ends_open_viewers():
    import threading

    m, w = _web()
    done = threading.Event()
    w.__enter__()
    key = w.live.view("cam").key
    _feed([w], "cam", 3)

    def view():
        try:
            with httpx.Client(base_url=w.url, timeout=20).stream("GET", f"/sources/{key}.mjpg") as r:
                for _ in r.iter_bytes():
                    pass
        except httpx.HTTPError:
            pass
        done.set()

    t = threading.Thread(target=view, daemon=True)
    t.start()
    time.sleep(0.5)
    assert w.live.slots[key].viewers == 1
    t0 = time.monotonic()
    w.close()
    assert done.wait(5) and time.monotonic() - t0 < 5  # the stream ended: the viewer keeps its last frame
    assert w.live.slots[key].viewers == 0


def test_people_in_view_decided_labels_and_people_metrics():
    """With the new result type (stream.results) and tracker output: people in view on the page and the
    API, counts per decided label, and the people metrics, with snapshot cut around the person's box."""
    import cv2
    from prometheus_client.parser import text_string_to_metric_families

    from stream.results import Detection as Det
    from stream.results import Detections
    from stream.results import FrameResult as Result

    sid = "lobby"
    m, w = _web(sid=sid)
    img = np.zeros((120, 160, 3), np.uint8)
    img[20:60, 100:140] = (0, 0, 255)  # person 2's box region, red
    with m, w:
        people = [{"person_id": 1, "label": "with_mask", "box": (10, 10, 50, 60), "confidence": 0.8},
                  {"person_id": 2, "label": "without_mask", "box": (100, 20, 140, 60), "confidence": 0.9}]
        dets = Detections.from_list([Det((10, 10, 50, 60), "with_mask", 0, 0.8),
                                     Det((100, 20, 140, 60), "without_mask", 1, 0.9)], ("with_mask", "without_mask"))
        r = Result(make_frame(sid, 5, h=120, w=160), None, None, None, dets, None, extra={"people": people})
        for s in (m, w):
            s.write(r, img)
        for ev in ({"event": "decided", "person_id": 1, "label": "with_mask"},
                   {"event": "decided", "person_id": 2, "label": "without_mask"},
                   {"event": "decided", "person_id": 3, "label": "without_mask"},
                   {"event": "left", "person_id": 3, "label": "without_mask"}):
            full = {"type": "person", "source": sid, "frame_index": 5, "time": time.time(), "confidence": 0.9,
                    "frames_seen": 7, "snapshot": None, **ev}
            m.person(full)
            w.person(full)
        c = httpx.Client(base_url=w.url, timeout=5)
        ppl = c.get("/api/people").json()
        assert [p["person_id"] for p in ppl["in_view"][sid]] == [1, 2]
        assert ppl["counts"] == {"with_mask": 1, "without_mask": 2}
        st = c.get("/api/status").json()
        assert st["sources"][0]["people_in_view"][1]["label"] == "without_mask"
        snaps = st["snapshots"]
        assert [s["person_id"] for s in snaps] == [3, 2]  # newest first
        crop = cv2.imdecode(np.frombuffer(c.get(snaps[1]["url"]).content, np.uint8), cv2.IMREAD_COLOR)
        assert crop.shape[:2] == (60, 60)  # 40x40 box + 25% per side, clipped at the frame's right edge
        assert crop[15:45, 10:40, 2].mean() > 200 and crop[15:45, 10:40, :2].mean() < 40  # the person's box
        fams = {(s.name, tuple(sorted(s.labels.items()))): s.value
                for f in text_string_to_metric_families(c.get("/metrics").text) for s in f.samples}
        assert fams[("maskstream_people_without_mask", (("source", sid),))] == 1  # 2 in view; 3 left
        assert fams[("maskstream_people_total", (("label", "without_mask"), ("source", sid)))] == 2
        assert fams[("maskstream_people_total", (("label", "with_mask"), ("source", sid)))] == 1


def test_run_builds_the_headless_sinks_from_the_registry(tmp_path):
    """``sinks.metrics``, ``sinks.alerts`` and ``sinks.web`` are registered sink types: ``build_sinks`` makes
    them from the config, the web view serves the metrics sink's registry (with the sources' own counters and
    the alert sink's transport counters) and shows the alert sink's source alerts; metrics alone is off."""
    from types import SimpleNamespace

    from stream.pipeline import build_sinks
    from stream.sinks.alerts import AlertSink

    assert build_sinks(load_config(None), ["a"], {"a": None}) == []  # the defaults: nothing headless
    only = build_sinks(load_config(None, {"sinks": {"metrics": {"textfile": str(tmp_path / "m.prom")}}}), ["a"], {})
    assert [type(s) for s in only] == [MetricsSink]
    cfg = load_config(None, {"sinks": {
        "web": {"enabled": True, "port": 0},
        "alerts": {"labels": ["without_mask", "mask_weared_incorrect"], "fallback_frames": 2, "flush_s": 0.2,
                   "webhook": {"url": "http://127.0.0.1:9/hook", "timeout_s": 0.1}},
    }})
    src = SimpleNamespace(source_id=SECRET_URL, stats=SimpleNamespace(frames_read=7, frames_dropped=2, reconnects=1))
    sinks = build_sinks(cfg, [SECRET_URL], {SECRET_URL: 25.0}, ("with_mask", "without_mask"), [src])
    assert [type(s) for s in sinks] == [MetricsSink, AlertSink, WebSink]
    m, a, w = sinks
    w.announce = False
    assert w.rules.labels == {"without_mask", "mask_weared_incorrect"} and w.rules.fallback_frames == 2
    with m, a, w:
        a.on_alert({"id": "x1", "kind": "source_down", "source": "rtsp://admin:***@10.0.0.7:554/live"})
        a.on_alert({"id": "x2", "kind": "no_mask", "source": "rtsp://admin:***@10.0.0.7:554/live"})
        kinds = [e.get("kind") for e in httpx.get(w.url + "api/events?since=0", timeout=5).json()["events"]]
        assert kinds == ["source_down"]  # no-mask alerts the page makes itself
        text = httpx.get(w.url + "metrics", timeout=5).text
    assert 'maskstream_frames_in_total{source="rtsp://admin:***@10.0.0.7:554/live?token=***"} 7.0' in text
    assert 'maskstream_alert_messages_sent_total{transport="webhook"} 0.0' in text
    assert "hunter2" not in text and "s3cr3t" not in text
