"""Alerts over a webhook against a real HTTP receiver on loopback that answers 500, then hangs, then
recovers: every alert is delivered exactly once after recovery, the pipeline never waits, a full queue
drops and counts, and Ctrl-C (close) flushes within a bounded time and says what it could not deliver."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from stream.alerts.options import AlertsOptions, SourceLimits, WebhookOptions
from stream.results import Detection, FrameResult
from stream.sinks.alerts import AlertSink
from tests._stream_fakes import make_frame

pytestmark = pytest.mark.timeout(90)


class Receiver:
    """Answers per request, in order, from ``script`` ("500", "hang", "200"); then "200" forever.
    Records the alert ids it answered 200 and every body it saw."""

    def __init__(self, script=(), hang_s: float = 1.5) -> None:
        self.script = list(script)
        self.hang_s = hang_s
        self.delivered: list[str] = []
        self.seen: list[dict] = []
        self.lock = threading.Lock()
        rec = self

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with rec.lock:
                    rec.seen.append(body)
                    what = rec.script.pop(0) if rec.script else "200"
                if what == "hang":
                    time.sleep(rec.hang_s)
                    return  # never answers (the client timed out long ago)
                code = int(what)
                if code == 200:
                    with rec.lock:
                        rec.delivered.append(self.headers["Idempotency-Key"])
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _opts(url, **kw):
    wh = {"url": url, "timeout_s": 0.3, "backoff_initial_s": 0.05, "backoff_max_s": 0.2, "queue_size": 100}
    wh.update(kw.pop("webhook", {}))
    return AlertsOptions(webhook=WebhookOptions(**wh), limits=SourceLimits(max_alerts=0), **kw)


def _decided(pid, label="without_mask", frame=None):
    return {"type": "person", "event": "decided", "source": "rtsp://u:hunter2@cam/1", "person_id": pid,
            "frame_index": pid * 10 if frame is None else frame, "time": time.time(), "label": label,
            "confidence": 0.9, "frames_seen": 8, "snapshot": None}


def _frame(i):
    f = make_frame("rtsp://u:hunter2@cam/1", i, h=120, w=160)
    r = FrameResult(f, None, None, None, (Detection((40, 30, 80, 90), "without_mask", 1, 0.9),), None,
                    )
    return r, np.full((120, 160, 3), 90, np.uint8)


def _wait(cond, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.02)
    return cond()


def test_every_alert_delivered_once_after_500s_and_hangs():
    rec = Receiver(["500", "500", "500", "hang", "hang", "500"])
    sink = AlertSink(_opts(rec.url))
    try:
        with sink:
            r, img = _frame(0)
            sink.write(r, img)  # the frame the snapshots are cut from
            t0 = time.perf_counter()
            for pid in range(1, 9):
                sink.person(_decided(pid))
                sink.person(_decided(pid, frame=pid * 10 + 1))  # repeated decision: no second alert
            sink.person(_decided(20, label="with_mask"))  # not an alerting label
            spent = time.perf_counter() - t0
            assert spent < 0.5, f"the pipeline waited {spent:.2f} s on the webhook"
            assert _wait(lambda: len(rec.delivered) >= 8)
        expected = [f"rtsp://u:***@cam/1/person-{p}/{p * 10}" for p in range(1, 9)]
        assert sorted(rec.delivered) == sorted(expected)  # each exactly once, none missing, no extra
        assert len(rec.seen) == 8 + 6  # 6 failed attempts, all retried
        body = rec.seen[-1]
        assert body["kind"] == "no_mask" and "hunter2" not in json.dumps(rec.seen)
        import base64

        assert base64.b64decode(body["snapshot_jpeg"])[:2] == b"\xff\xd8"  # the explained crop
        c = sink.report()["transports"]["webhook"]
        assert (c["sent"], c["dropped"], c["failed"], c["undelivered"]) == (8, 0, 0, 0)
    finally:
        rec.close()


def test_full_queue_drops_and_counts_without_blocking():
    rec = Receiver(["hang"] * 100, hang_s=0.5)
    sink = AlertSink(_opts(rec.url, flush_s=0.5, webhook={"queue_size": 3, "timeout_s": 0.2}))
    try:
        with sink:
            t0 = time.perf_counter()
            for pid in range(1, 21):
                sink.person(_decided(pid))
            assert time.perf_counter() - t0 < 0.5
            c = sink.report()["transports"]["webhook"]
            assert c["submitted"] == 3 and c["dropped"] == 17
    finally:
        rec.close()
    c = sink.report()["transports"]["webhook"]
    assert c["sent"] == 0 and c["undelivered"] == 3


def test_close_is_bounded_and_reports_undelivered(caplog):
    rec = Receiver(["hang"] * 100, hang_s=3.0)
    sink = AlertSink(_opts(rec.url, flush_s=1.0, webhook={"timeout_s": 0.5}))
    try:
        sink.__enter__()
        for pid in range(1, 5):
            sink.person(_decided(pid))
        time.sleep(0.2)
        t0 = time.monotonic()
        with caplog.at_level("WARNING"):
            sink.close()
        assert time.monotonic() - t0 < 1.0 + 2.5  # flush time + the bounded join
    finally:
        rec.close()
    assert sink.report()["transports"]["webhook"]["undelivered"] == 4
    assert "NOT DELIVERED 4" in caplog.text and "hunter2" not in caplog.text


def test_gives_up_on_4xx_and_after_max_attempts():
    rec = Receiver(["400", "500", "500"])
    sink = AlertSink(_opts(rec.url, webhook={"max_attempts": 2}))
    try:
        with sink:
            sink.person(_decided(1))  # 400: refused, not retried
            sink.person(_decided(2))  # 500, 500: given up after 2 attempts
            sink.person(_decided(3))  # 200
            assert _wait(lambda: len(rec.delivered) == 1)
    finally:
        rec.close()
    c = sink.report()["transports"]["webhook"]
    assert (c["sent"], c["failed"]) == (1, 2) and rec.delivered == ["rtsp://u:***@cam/1/person-3/30"]


def test_rate_limit_and_quiet_hours_suppress_per_source():
    rec = Receiver()
    opts = AlertsOptions(webhook=WebhookOptions(url=rec.url, timeout_s=1.0),
                         limits=SourceLimits(max_alerts=2, period_s=3600.0),
                         sources={"rtsp://u:***@cam/2": SourceLimits(max_alerts=0, quiet_hours=("00:00-23:59",))})
    sink = AlertSink(opts)
    try:
        with sink:
            for pid in range(1, 6):
                sink.person(_decided(pid))
            sink.person({**_decided(9), "source": "rtsp://u:hunter2@cam/2"})
            assert _wait(lambda: len(rec.delivered) == 2)
            time.sleep(0.2)
    finally:
        rec.close()
    assert len(rec.delivered) == 2
    import datetime

    quiet = datetime.datetime.now().strftime("%H:%M") != "23:59"
    assert sink.suppressed["rate limit"] == 3 and sink.suppressed["quiet hours"] == (1 if quiet else 0)


def test_frame_fallback_alert_without_tracker():
    rec = Receiver()
    sink = AlertSink(_opts(rec.url, fallback_frames=4))
    try:
        with sink:
            for i in range(10):
                sink.write(*_frame(i))
            assert _wait(lambda: len(rec.delivered) == 1)
    finally:
        rec.close()
    assert rec.seen[0]["kind"] == "no_mask_frames" and rec.seen[0]["frame_index"] == 3
    assert rec.seen[0]["box"] == [40.0, 30.0, 80.0, 90.0]
