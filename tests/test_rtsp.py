"""A real RTSP server (GStreamer, tools/rtsp_server.py): frames, crash, reconnect, credentials.

Skips with the reason when the system Python lacks gi/GstRtspServer (install with
``.ci/system-deps``). Run alone with ``python -m pytest -q -s tests/test_rtsp.py`` to see rates.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.frames import Frame, SourceEvent, SourceState
from stream.sources import SourceOptions, open_source
from tools.rtsp_server import RtspServerProcess, free_port, unavailable_reason

pytestmark = pytest.mark.rtsp
S = SourceState

NET_OPTS = SourceOptions(
    open_timeout=5.0, read_timeout=2.0, reconnect_initial=0.2, reconnect_max=0.5, reconnect_jitter=0.1, seed=0
)


@pytest.fixture(scope="module")
def rtsp_ready() -> None:
    reason = unavailable_reason()
    if reason:
        pytest.skip(f"RTSP server unavailable: {reason}")


class Collector:
    """Pulls one source on a thread, recording (receive time, item)."""

    def __init__(self, src) -> None:
        self.src = src
        self.items: list[tuple[float, object]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.src.get(0.1)
            if item is not None:
                with self._lock:
                    self.items.append((time.monotonic(), item))

    def __enter__(self) -> Collector:
        self.src.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.src.stop()
        self._thread.join(5)

    def snapshot(self) -> list[tuple[float, object]]:
        with self._lock:
            return list(self.items)

    def frames(self, since: float = 0.0) -> list[Frame]:
        return [i for t, i in self.snapshot() if isinstance(i, Frame) and t >= since]

    def events(self) -> list[tuple[float, SourceEvent]]:
        return [(t, i) for t, i in self.snapshot() if isinstance(i, SourceEvent)]

    def wait(self, predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                states = [(e.state.value, e.attempt) for _, e in self.events()]
                raise AssertionError(f"timed out waiting for {what}; events {states}, "
                                     f"{len(self.frames())} frames")
            time.sleep(0.02)

    def first_event(self, state: SourceState, after: float = 0.0) -> float | None:
        return next((t for t, e in self.events() if e.state is state and t >= after), None)


def _make_video(path: Path, n: int = 15) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (64, 48))
    for i in range(n):
        writer.write(np.full((48, 64, 3), 10 * i, np.uint8))
    writer.release()
    return path


@pytest.mark.timeout(90)
def test_rtsp_frames_crash_reconnect_while_file_keeps_going(rtsp_ready: None, tmp_path: Path) -> None:
    server = RtspServerProcess(free_port(), ["--fps", "30"])
    try:
        server.start()
        net = open_source(server.url, options=NET_OPTS)
        video = open_source(str(_make_video(tmp_path / "loop.mp4")), source_id="file",
                            options=SourceOptions(loop=True, fps=30.0))
        with Collector(net) as cn, Collector(video) as cf:
            # 1. frames arrive from both sources
            cn.wait(lambda: len(cn.frames()) >= 30, 20, "30 RTSP frames")
            first_frames = cn.frames()
            fps_up = (len(first_frames) - 1) / (first_frames[-1].capture_time - first_frames[0].capture_time)
            assert first_frames[0].image.shape == (240, 320, 3)
            assert len(cf.frames()) > 0

            # 2. the server crashes: DISCONNECTED, then RECONNECTING, and no frame while down
            server.kill()
            killed_at = time.monotonic()
            cn.wait(lambda: cn.first_event(S.RECONNECTING, killed_at) is not None, 15, "RECONNECTING")
            time.sleep(1.5)  # stay down a while: retries fail (connection refused)
            down_until = time.monotonic()
            assert len(cf.frames(since=killed_at)) >= 10, "the file source stalled while RTSP was down"

            # 3. the server comes back on the same port: CONNECTED again, frames resume
            server.start()
            restarted_at = time.monotonic()
            cn.wait(lambda: cn.first_event(S.CONNECTED, restarted_at) is not None, 20, "CONNECTED again")
            reconnected_at = cn.first_event(S.CONNECTED, restarted_at)
            cn.wait(lambda: len(cn.frames(since=reconnected_at)) >= 30, 20, "30 frames after reconnect")
            first_after = cn.frames(since=reconnected_at)[0]
            frames_file_total = len(cf.frames())
        items = [i for _, i in cn.snapshot()]
        file_items = [i for _, i in cf.snapshot()]
    finally:
        server.kill()

    # event order on the network source, and no frame between DISCONNECTED and CONNECTED
    states = [i.state for i in items if isinstance(i, SourceEvent)]
    assert states[:3] == [S.CONNECTING, S.CONNECTED, S.DISCONNECTED]
    assert states[-1] is S.CONNECTED and set(states[3:-1]) == {S.RECONNECTING}
    attempts = [i.attempt for i in items if isinstance(i, SourceEvent) and i.state is S.RECONNECTING]
    assert attempts == list(range(1, len(attempts) + 1)) and len(attempts) >= 2
    down = items.index(next(i for i in items if isinstance(i, SourceEvent) and i.state is S.DISCONNECTED))
    up = len(items) - 1 - items[::-1].index(next(i for i in items[::-1] if isinstance(i, SourceEvent)
                                                  and i.state is S.CONNECTED))
    assert not any(isinstance(i, Frame) for i in items[down:up])
    assert all(f.capture_time < down_until or f.capture_time >= restarted_at
               for f in items if isinstance(f, Frame))
    indices = [f.index for f in items if isinstance(f, Frame)]
    assert indices == sorted(indices) and len(set(indices)) == len(indices)
    assert net.stats.reconnects == 1
    # the file source never saw a state change and kept delivering
    assert [i.state for i in file_items if isinstance(i, SourceEvent)] == [S.CONNECTING, S.CONNECTED]

    print(f"\nRTSP 320x240@30: {fps_up:.1f} frames/s read; reconnect {reconnected_at - restarted_at:.2f} s "
          f"after restart (first frame {first_after.capture_time - restarted_at:.2f} s); "
          f"{len(attempts)} attempts while down; file frames {frames_file_total}; "
          f"dropped {net.stats.frames_dropped}")


@pytest.mark.timeout(60)
def test_rtsp_credentials_work_and_never_show(
    rtsp_ready: None, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    server = RtspServerProcess(free_port(), ["--user", "alice", "--password", "s3cretpw"])
    try:
        server.start()
        good = server.url.replace("rtsp://", "rtsp://alice:s3cretpw@")
        bad = server.url.replace("rtsp://", "rtsp://alice:wr0ngpw@")
        with caplog.at_level(logging.DEBUG):
            with Collector(open_source(good, options=NET_OPTS)) as ok:
                ok.wait(lambda: len(ok.frames()) >= 5, 20, "5 frames with the right password")
            opts = SourceOptions(open_timeout=5.0, read_timeout=2.0, reconnect_initial=0.1, reconnect_max=0.1,
                                 max_attempts=1)
            with Collector(open_source(bad, options=opts)) as ko:
                ko.wait(lambda: ko.first_event(S.FAILED) is not None, 20, "FAILED with a wrong password")
    finally:
        server.kill()
    frames = ok.frames()
    assert frames[0].source_id == server.url.replace("rtsp://", "rtsp://alice:***@")
    assert [e.state for _, e in ko.events()] == [S.CONNECTING, S.RECONNECTING, S.FAILED]
    out, err = capfd.readouterr()
    for text in [caplog.text, repr(ok.snapshot()), repr(ko.events()), out, err]:
        assert "s3cretpw" not in text and "wr0ngpw" not in text


@pytest.mark.timeout(60)
def test_rtsp_server_hang_is_caught_by_timeouts(rtsp_ready: None) -> None:
    """SIGSTOP: the socket stays open but nothing comes; read and open timeouts must notice."""
    server = RtspServerProcess(free_port())
    opts = SourceOptions(open_timeout=1.5, read_timeout=1.5, reconnect_initial=0.1, reconnect_max=0.2,
                         reconnect_jitter=0.0)
    try:
        server.start()
        with Collector(open_source(server.url, options=opts)) as cn:
            cn.wait(lambda: len(cn.frames()) >= 10, 20, "10 frames")
            server.proc.send_signal(signal.SIGSTOP)
            frozen_at = time.monotonic()
            # open attempts now hang until open_timeout (TCP connects, RTSP never answers)
            cn.wait(lambda: any(e.attempt == 2 and t > frozen_at for t, e in cn.events()), 20,
                    "a second reconnect attempt")
            server.proc.send_signal(signal.SIGCONT)
            thawed_at = time.monotonic()
            cn.wait(lambda: cn.first_event(S.CONNECTED, thawed_at) is not None, 20, "CONNECTED after SIGCONT")
            back = cn.first_event(S.CONNECTED, thawed_at)
            cn.wait(lambda: len(cn.frames(since=back)) >= 5, 20, "frames after thaw")
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        server.kill()
    events = cn.events()
    shown = [(round(t - frozen_at, 2), e.state.value, e.attempt) for t, e in events]
    lost_at = cn.first_event(S.DISCONNECTED, frozen_at)
    # noticed by the read timeout (not earlier: nothing failed; not never)
    assert lost_at is not None and lost_at - frozen_at >= 0.9 * opts.read_timeout, shown
    after = [e.state for t, e in events if frozen_at <= t <= back]
    assert after[0] is S.DISCONNECTED and after[-1] is S.CONNECTED, shown
    assert set(after[1:-1]) == {S.RECONNECTING}, shown
    # frames the decoder still held when the read timed out were not passed on as fresh
    late = [f.index for f in cn.frames() if frozen_at + 0.5 < f.capture_time < back]
    assert late == [], (late, shown)
