"""Headless deployment, the pure parts: config sections, --serve parsing, alert rules, limits and quiet
hours, the snapshot crop, the frame slot (newest frame, encode once, only while watched), events API."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from stream.alerts.limits import SourceLimiter, in_quiet_hours
from stream.alerts.options import SourceLimits, parse_quiet_hours
from stream.alerts.rules import AlertRules
from stream.alerts.snapshot import crop_box, explained_snapshot
from stream.cli.cmd_run import parse_serve
from stream.config import load_config
from stream.errors import UserError
from stream.web.frames import FrameSlot
from stream.web.options import is_loopback
from stream.web.state import LiveState, source_key


@pytest.mark.parametrize(
    "section, options, message",
    [
        ("web", {"enabled": True, "host": "0.0.0.0"}, "web.host 0.0.0.0 is not a loopback address"),
        ("web", {"port": 70000}, "web.port must be an int in [0, 65535]"),
        ("web", {"mjpeg_fps": 0}, "web.mjpeg_fps must be in (0, 120]"),
        ("web", {"mjpeg_fpz": 1}, "web.mjpeg_fpz is not a known key (did you mean sinks.web.mjpeg_fps?)"),
        ("metrics", {"latency_buckets": [1, 0.5]}, "metrics.latency_buckets must be a non-empty increasing"),
        ("alerts", {"limits": {"quiet_hours": ["22:00-6:00"]}}, "alerts.limits.quiet_hours[0] must be 'HH:MM-HH:MM'"),
        ("alerts", {"sources": {"cam": {"max_alertz": 1}}}, "alerts.sources.cam.max_alertz is not a known key"),
        ("alerts", {"webhook": {"url": "ftp://x"}}, "alerts.webhook.url must be an http:// or https:// URL"),
        ("alerts", {"mqtt": {"topic_prefix": "a/#"}}, "alerts.mqtt.topic_prefix must be letters"),
        ("alerts", {"webhook": {"queue_size": 0}}, "alerts.webhook.queue_size must be an int in [1, 100000]"),
    ],
)
def test_config_errors_name_the_key(section, options, message):
    """The sinks' sections are built from their options (the sink registry): strict, the dotted key named."""
    with pytest.raises(UserError) as ei:
        load_config(None, {"sinks": {section: options}})
    assert f"command line: sinks.{message}" in str(ei.value)


def test_config_accepts_remote_bind_only_when_asked():
    cfg = load_config(None, {"sinks": {"web": {"enabled": True, "host": "0.0.0.0", "allow_remote": True}}})
    assert cfg.sinks.web.host == "0.0.0.0" and cfg.sinks.web.allow_remote
    cfg = load_config(None, {"sinks": {"alerts": {"sources": {"lobby": {"max_alerts": 2,
                                                                        "quiet_hours": ["22:00-06:00"]}}}}})
    assert cfg.sinks.alerts.limits_for("lobby").max_alerts == 2
    assert cfg.sinks.alerts.limits_for("other").max_alerts == 10
    assert not cfg.sinks.alerts.enabled and not cfg.sinks.web.enabled


@pytest.mark.parametrize(
    "text, expected",
    [("8080", {"enabled": True, "port": 8080}), ("0", {"enabled": True, "port": 0}),
     ("127.0.0.1:9000", {"enabled": True, "port": 9000, "host": "127.0.0.1"}),
     ("[::1]:9000", {"enabled": True, "port": 9000, "host": "::1"})],
)
def test_parse_serve(text, expected):
    assert parse_serve(text) == expected


@pytest.mark.parametrize("bad", ["http", "1:2:x", "99999", ""])
def test_parse_serve_rejects(bad):
    with pytest.raises(UserError, match="--serve"):
        parse_serve(bad)


@pytest.mark.parametrize("host, ok", [("127.0.0.1", True), ("127.8.0.2", True), ("::1", True), ("localhost", True),
                                      ("0.0.0.0", False), ("192.168.1.4", False), ("::", False), ("cam.lan", False)])
def test_is_loopback(host, ok):
    assert is_loopback(host) is ok


def _person(event, pid, label, frame=0, **kw):
    return {"type": "person", "event": event, "source": "cam", "person_id": pid, "frame_index": frame,
            "time": 1.0, "label": label, **kw}


def test_rules_alert_once_per_person_and_change():
    r = AlertRules(frozenset({"without_mask"}), fallback_frames=5, source_down_s=0)
    seq = [
        _person("appeared", 1, None),
        _person("decided", 1, "without_mask", 3),  # alert 1
        _person("decided", 1, "without_mask", 4),  # repeat: no alert
        _person("changed", 1, "with_mask", 9, previous_label="without_mask"),
        _person("changed", 1, "without_mask", 15, previous_label="with_mask"),  # alert 2 (a change)
        _person("decided", 2, "with_mask", 5),
        _person("left", 1, "without_mask", 20),
        _person("decided", 3, "without_mask", 21),  # alert 3
    ]
    alerts = [a for a in (r.on_person(e) for e in seq) if a]
    assert [(a["person_id"], a["frame_index"]) for a in alerts] == [(1, 3), (1, 15), (3, 21)]
    assert all(a["kind"] == "no_mask" for a in alerts) and len({a["id"] for a in alerts}) == 3


def test_rules_fallback_runs_then_off_once_people_arrive():
    r = AlertRules(frozenset({"without_mask"}), fallback_frames=3, source_down_s=0)
    labels = ["without_mask"] * 5 + ["with_mask"] * 2 + ["without_mask"] * 3 + ["with_mask"] * 3 + ["without_mask"] * 3
    fired = [i for i, lab in enumerate(labels) if r.on_frame("cam", i, 0.0, {lab})]
    # first run fires at its 3rd frame; 2 clear frames do not re-arm (needs 3); after 3 clear, fires again
    assert fired == [2, 15]
    r.on_person(_person("appeared", 1, None))
    assert all(r.on_frame("cam", 100 + i, 0.0, {"without_mask"}) is None for i in range(10))


def test_rules_source_down_once_then_up():
    r = AlertRules(frozenset({"without_mask"}), 0, source_down_s=2.0)
    assert r.on_state("rtsp://u:pw@cam/x", "reconnecting", now=10.0, t=100.0) is None
    assert r.tick(11.9, 101.9) == []
    down = r.tick(12.0, 102.0)
    assert len(down) == 1 and down[0]["kind"] == "source_down" and "pw" not in str(down[0])
    assert r.tick(20.0, 110.0) == []  # once
    up = r.on_state("rtsp://u:pw@cam/x", "connected", now=21.0, t=111.0)
    assert up["kind"] == "source_up"
    assert r.on_state("rtsp://u:pw@cam/x", "connected", now=22.0, t=112.0) is None


def test_quiet_hours_and_rate_limit():
    spans = parse_quiet_hours(("22:00-06:30", "12:00-13:00"))
    assert spans == ((1320, 390), (720, 780))
    assert [in_quiet_hours(spans, m) for m in (1319, 1320, 0, 389, 390, 720, 779, 780)] == [
        False, True, True, True, False, True, True, False]
    lim = SourceLimiter(SourceLimits(max_alerts=2, period_s=10.0))
    got = [lim.check(t) for t in (0.0, 1.0, 2.0, 9.9, 10.0, 11.0, 11.5)]
    assert got == [None, None, "rate limit", "rate limit", None, None, "rate limit"]
    noon = time.mktime((2026, 11, 30, 12, 30, 0, 0, 0, -1))  # local time 12:30
    quiet = SourceLimiter(SourceLimits(max_alerts=0, quiet_hours=("12:00-13:00",)))
    assert quiet.check(0.0, noon) == "quiet hours" and quiet.check(0.0, noon + 3600) is None


def test_crop_box_and_snapshot():
    img = np.arange(100 * 200 * 3, dtype=np.uint32).reshape(100, 200, 3).astype(np.uint8)
    c = crop_box(img, (50, 20, 90, 60), margin=0.25)  # 40x40 box + 10 px per side
    assert c.shape == (60, 60, 3) and np.array_equal(c, img[10:70, 40:100])
    assert crop_box(img, (190, 90, 230, 130), 0.5).shape == (30, 30, 3)  # clipped at the border
    assert crop_box(img, None).shape == img.shape
    jpeg = explained_snapshot(None, img, (50, 20, 90, 60))
    assert jpeg[:2] == b"\xff\xd8"
    assert explained_snapshot(b"\xff\xd8given", img, None) == b"\xff\xd8given"
    assert explained_snapshot(None, None, None) is None


def test_frame_slot_encodes_once_per_frame_and_only_newest():
    slot = FrameSlot(width=64, quality=80)
    assert slot.jpeg() is None
    for i in range(5):
        slot.put(np.full((48, 128, 3), i * 40, np.uint8))
    assert slot.encoded == 0  # nobody asked: nothing encoded
    seq, a = slot.jpeg()
    seq2, b = slot.jpeg()
    assert seq == seq2 == 5 and a == b and slot.encoded == 1
    import cv2

    im = cv2.imdecode(np.frombuffer(a, np.uint8), cv2.IMREAD_COLOR)
    assert im.shape == (24, 64, 3) and abs(int(im.mean()) - 160) <= 2  # the newest frame, shrunk


def test_frame_slot_wakes_viewers():
    slot = FrameSlot()

    async def main():
        ev = asyncio.Event()
        unwatch = slot.watch(asyncio.get_running_loop(), ev)
        assert slot.viewers == 1
        await asyncio.to_thread(slot.put, np.zeros((4, 4, 3), np.uint8))
        await asyncio.wait_for(ev.wait(), 2)
        unwatch()
        assert slot.viewers == 0

    asyncio.run(main())


def test_live_state_events_since_and_counts():
    live = LiveState(["rtsp://admin:pw@cam/1"], events_kept=3)
    for i in range(5):
        live.add_event({"type": "state", "source": "rtsp://admin:pw@cam/1", "state": "connected", "n": i})
    got = live.events_since(0)
    assert [e["n"] for e in got["events"]] == [2, 3, 4] and got["next"] == 5 and got["missed"] == 2
    assert live.events_since(5)["events"] == [] and live.events_since(5)["next"] == 5
    live.on_person(_person("decided", 1, "without_mask"))
    live.on_person(_person("decided", 2, "with_mask"))
    live.on_person(_person("changed", 1, "with_mask"))
    assert live.people_json()["counts"] == {"with_mask": 2}
    assert "pw" not in str(live.status()) and source_key("rtsp://admin:pw@cam/1") == "rtsp_admin_cam_1"
