"""Alerts over MQTT against Debian's mosquitto, started and stopped by the test on a free loopback port:
each decided no-mask person arrives exactly once; the broker stopped and restarted mid-run loses
nothing that fits the queue; the retained status and the last will tell a dashboard when maskstream
is gone. Skips when mosquitto is absent (``.ci/system-deps`` installs it)."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.alerts.options import AlertsOptions, MqttOptions, SourceLimits  # noqa: E402
from stream.sinks.alerts import AlertSink  # noqa: E402
from tests._headless import MOSQUITTO, Broker, Subscriber, start_run, stop_run  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint, write_video  # noqa: E402

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(MOSQUITTO is None, reason="mosquitto is not installed (.ci/system-deps)")]
SRC = "rtsp://u:hunter2@cam/1"


def _decided(pid, label="without_mask"):
    return {"type": "person", "event": "decided", "source": SRC, "person_id": pid, "frame_index": pid * 10,
            "time": time.time(), "label": label, "confidence": 0.9, "frames_seen": 8, "snapshot": None}


def _sink(port, flush_s=5.0, **kw):
    mq = MqttOptions(host="127.0.0.1", port=port, client_id="maskstream-test", reconnect_min_s=0.1,
                     reconnect_max_s=0.5, keepalive_s=5, **kw)
    return AlertSink(AlertsOptions(mqtt=mq, limits=SourceLimits(max_alerts=0), flush_s=flush_s))


def _ids(sub):
    return [json.loads(p)["id"] for _, p, _ in sub.on("/alert")]


def test_each_decided_no_mask_person_arrives_once(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port)
    try:
        sink = _sink(broker.port)
        with sink:
            assert sink.mqtt.connected.wait(10)
            for pid in range(1, 7):
                sink.person({**_decided(pid), "event": "appeared", "label": None})
                sink.person(_decided(pid, "without_mask" if pid % 2 else "with_mask"))
                sink.person(_decided(pid, "without_mask" if pid % 2 else "with_mask"))  # repeated: no new alert
            assert sub.wait_for(lambda: len(_ids(sub)) >= 3)
        # the broker forwards to the subscriber on its own time: wait for the goodbye, published last (the
        # broker keeps one client's order), so everything before it has arrived too
        assert sub.wait_for(lambda: sub.on("maskstream/status")[-1][1] == b"offline" if sub.on("maskstream/status")
                            else False, 30)
        ids = _ids(sub)
        assert sorted(ids) == sorted(f"rtsp://u:***@cam/1/person-{p}/{p * 10}" for p in (1, 3, 5))
        topics = {t for t, _, _ in sub.messages}
        assert "maskstream/rtsp_u_cam_1/alert" in topics and "maskstream/rtsp_u_cam_1/person" in topics
        assert len(sub.on("/person")) == 18  # every person event, as published
        assert all("hunter2" not in t and b"hunter2" not in p for t, p, _ in sub.messages)
        snap = sub.on("/snapshot")
        assert snap == [] or snap[-1][1][:2] == b"\xff\xd8"  # no frame seen here: no snapshot to cut
        assert sub.on("maskstream/status")[-1][1] == b"offline"  # said goodbye on close
    finally:
        sub.close()
        broker.stop()


def test_broker_restart_mid_run_loses_nothing_that_fits_the_queue(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, client_id="persistent-sub")
    try:
        sink = _sink(broker.port, queue_size=50, person_events=False)
        with sink:
            assert sink.mqtt.connected.wait(10)
            for pid in range(1, 11):
                sink.person(_decided(pid))
            assert sub.wait_for(lambda: len(set(_ids(sub))) == 10)
            assert sub.sync()  # the broker has the subscriber's acks: 1-10 are not redelivered after the restart
            broker.stop()  # the broker goes away mid-run
            t0 = time.perf_counter()
            for pid in range(11, 31):  # 20 alerts while it is away: they fit the queue of 50
                sink.person(_decided(pid))
            assert time.perf_counter() - t0 < 5.0  # never waits on the broker (a blocking publish would wait out its reconnect backoff); generous for a loaded machine
            assert sub.wait_for(lambda: not sink.mqtt.connected.is_set(), 10)
            time.sleep(0.5)
            broker.start()  # same port, same persistence: the subscriber's session survives
            assert sink.mqtt.connected.wait(15)
            for pid in range(31, 36):
                sink.person(_decided(pid))
            assert sub.wait_for(lambda: len(set(_ids(sub))) >= 35, timeout=20)
        # the alerts published before the subscriber was back were kept for it only if its session survived
        assert sub.sessions[-1] is True, "the broker lost the subscriber's persistent session"
        ids = _ids(sub)
        assert set(ids) == {f"rtsp://u:***@cam/1/person-{p}/{p * 10}" for p in range(1, 36)}
        # QoS 1 is at-least-once: a message in flight when the broker died may come twice (ids let
        # consumers drop it); nothing may be missing.
        assert len(ids) - len(set(ids)) <= 2
        c = sink.report()["transports"]["mqtt"]
        assert c["dropped"] == 0 and c["undelivered"] == 0
        assert sink.mqtt.connects >= 2
    finally:
        sub.close()
        broker.stop()


def test_queue_overflow_while_broker_away_is_counted(tmp_path):
    broker = Broker(tmp_path).start()
    try:
        sink = _sink(broker.port, flush_s=1.0, queue_size=5, person_events=False)
        with sink:
            assert sink.mqtt.connected.wait(10)
            broker.stop()
            time.sleep(0.3)
            for pid in range(1, 13):
                sink.person(_decided(pid))
            c = sink.report()["transports"]["mqtt"]
            assert c["dropped"] == 7 and c["submitted"] == 5
        assert sink.report()["transports"]["mqtt"]["undelivered"] == 5
    finally:
        broker.stop()


@pytest.mark.slow
def test_last_will_fires_when_run_is_killed(tmp_path):
    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, client_id="will-watcher")
    ckpt = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    clip = write_video(tmp_path / "clip.avi", n=30)
    cfg = tmp_path / "mqtt.yaml"
    cfg.write_text(f"sinks:\n  alerts:\n    mqtt:\n      host: 127.0.0.1\n      port: {broker.port}\n      keepalive_s: 5\n"
                   f"      client_id: maskstream-will\n")
    proc = None
    try:
        proc, _url = start_run(["--checkpoint", str(ckpt), "--source", str(clip), "--loop", "--config", str(cfg)],
                               tmp_path)
        assert sub.wait_for(lambda: any(p == b"online" for _, p, _ in sub.on("maskstream/status")), 60)
        assert sub.wait_for(lambda: sub.on("/state"), 30)  # source states, retained
        proc.send_signal(signal.SIGKILL)  # no goodbye: only the last will can tell
        proc.wait(10)
        assert sub.wait_for(lambda: sub.on("maskstream/status")[-1][1] == b"offline", 15)
    finally:
        if proc is not None and proc.poll() is None:
            stop_run(proc, signal.SIGKILL)
        sub.close()
        broker.stop()


@pytest.mark.slow
def test_clip_alerts_arrive_exactly_once(tmp_path):
    """A whole clip through ``maskstream run``: the alerts the events file implies arrive once each.

    The run tracks people (``people.enabled``, the default): the alerts are the person alerts (a person
    decided or changed to no mask), and the frame-level fallback (``alerts.fallback_frames`` consecutive
    no-mask frames) only until the first person event. The expected set is recomputed here from the events
    file with the same rules, in the order the sinks saw them (a frame's person events come before it)."""
    from stream.alerts.rules import AlertRules

    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, client_id="clip-watcher")
    ckpt = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    sample = Path(__file__).resolve().parents[1] / "core" / "assets" / "samples" / "sample.mp4"
    cfg = tmp_path / "mqtt.yaml"
    cfg.write_text(f"sinks:\n  alerts:\n    fallback_frames: 3\n    limits:\n      max_alerts: 0\n    mqtt:\n"
                   f"      host: 127.0.0.1\n      port: {broker.port}\n      client_id: maskstream-clip\n")
    proc = None
    try:
        proc, _url = start_run(["--checkpoint", str(ckpt), "--source", str(sample), "--config", str(cfg),
                                "--events", "out/ev.jsonl"], tmp_path)
        proc.wait(150)
        code, _, err = stop_run(proc)
        assert code == 0, err
        rules = AlertRules(frozenset({"without_mask"}), fallback_frames=3, source_down_s=0)
        expected, frame, labels = [], None, set()
        lines = [json.loads(x) for x in (tmp_path / "out/ev.jsonl").read_text().splitlines()]
        for e in lines + [{"type": "frame", "source": "", "frame_index": -1, "label": None}]:
            if e["type"] in ("frame", "person") and frame is not None:  # the pending frame was written
                a = rules.on_frame(frame["source"], frame["frame_index"], 0.0, labels)
                if a:
                    expected.append(a["id"])
                frame = None
            if e["type"] == "frame":
                frame, labels = e, ({e["label"]} if e["label"] else set())
            elif e["type"] == "person":
                a = rules.on_person(e)
                if a:
                    expected.append(a["id"])
            elif e["type"] == "detection":
                labels.add(e["label"])
        assert any("/person-" in x for x in expected), "the tracked run decides someone without a mask"
        assert expected, "the clip should hold at least one run of no-mask frames"
        assert sub.wait_for(lambda: len(_ids(sub)) >= len(expected), 15)
        time.sleep(0.5)
        assert sorted(_ids(sub)) == sorted(expected)  # each exactly once, none missing, none extra
        assert sub.on("maskstream/status")[-1][1] == b"offline"  # a clean exit says goodbye
        snaps = sub.on("/snapshot")
        assert snaps and snaps[-1][1][:2] == b"\xff\xd8" and snaps[-1][2] is False  # live delivery
    finally:
        if proc is not None and proc.poll() is None:
            stop_run(proc, signal.SIGKILL)
        sub.close()
        broker.stop()
