"""Live-source behaviour driven by fake readers: drop-oldest, reconnect, stop, bad frames, secrets."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from stream.errors import UserError
from stream.frames import Frame, SourceEvent, SourceState
from stream.sources import CaptureSource, ReaderError, ReadResult, SourceOptions, open_source

S = SourceState
FAST = dict(reconnect_initial=0.01, reconnect_max=0.02, reconnect_jitter=0.0)


def img(value: int) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


class FakeReader:
    """A reader whose every call follows a script shared by all (re)connects.

    ``sessions`` is consumed one entry per ``open()``: ``"fail"`` makes the open raise,
    a list gives the images (or callables producing a ReadResult) that session yields before
    the stream is lost (read returns None) -- or, with ``hold`` set, blocks until released.
    """

    def __init__(self, owner: FakeCamera) -> None:
        self.owner = owner
        self.fps = None
        self.items: list = []
        self.hold = False

    def open(self) -> None:
        self.owner.opens += 1
        session = self.owner.sessions.pop(0) if self.owner.sessions else "fail"
        if session == "fail":
            raise ReaderError("cannot open fake camera")
        self.items, self.hold = list(session[0]), session[1]

    def read(self) -> ReadResult | None:
        self.owner.reads += 1
        self.owner.read_called.set()
        if self.items:
            item = self.items.pop(0)
            return item() if callable(item) else ReadResult(item)
        if self.hold:
            self.owner.holding.set()
            self.owner.release.wait(30)
        return None

    def close(self) -> None:
        self.owner.closes += 1


class FakeCamera:
    def __init__(self, sessions: list) -> None:
        self.sessions = sessions
        self.opens = self.reads = self.closes = 0
        self.read_called = threading.Event()
        self.holding = threading.Event()
        self.release = threading.Event()

    def factory(self) -> FakeReader:
        return FakeReader(self)


def live_source(cam: FakeCamera, *, open_in_start: bool = False, **opts) -> CaptureSource:
    return CaptureSource(cam.factory, source_id="fake", description="fake camera", live=True,
                         reconnect=True, open_in_start=open_in_start, options=SourceOptions(**opts))


def collect(src, until: Callable[[list], bool], timeout: float = 10.0) -> list:
    items: list = []
    deadline = time.monotonic() + timeout
    while not until(items):
        assert time.monotonic() < deadline, f"timed out; got {describe(items)}"
        item = src.get(0.2)
        if item is not None:
            items.append(item)
    return items


def describe(items: list) -> list:
    return [f"F{i.index}" if isinstance(i, Frame) else (i.state.value, i.attempt) for i in items]


def last_state(state: SourceState) -> Callable[[list], bool]:
    return lambda items: bool(items) and isinstance(items[-1], SourceEvent) and items[-1].state is state


@pytest.mark.timeout(20)
def test_live_buffer_drops_oldest_and_counts() -> None:
    cam = FakeCamera([([img(i) for i in range(10)], True)])
    src = live_source(cam, live_buffer=2)
    src.start()
    try:
        assert cam.holding.wait(10)  # all 10 frames were pushed while nobody read
        items = collect(src, lambda it: sum(isinstance(i, Frame) for i in it) == 2)
        assert describe(items) == [("connecting", 0), ("connected", 0), "F8", "F9"]
        assert [int(i.image[0, 0, 0]) for i in items if isinstance(i, Frame)] == [8, 9]
        assert src.stats.frames_dropped == 8
        assert src.stats.frames_read == 10
        assert src.get(0.05) is None  # nothing stale left
    finally:
        cam.release.set()
        src.stop()


@pytest.mark.timeout(20)
def test_reconnects_with_no_frame_while_down() -> None:
    cam = FakeCamera([
        ([img(10), img(11), img(12)], False),  # then the stream is lost
        "fail", "fail",
        ([img(20), img(21), img(22)], True),
    ])
    src = live_source(cam, live_buffer=16, **FAST)
    with src:
        items = collect(src, lambda it: sum(isinstance(i, Frame) for i in it) == 6)
        cam.release.set()
    assert describe(items) == [
        ("connecting", 0), ("connected", 0), "F0", "F1", "F2",
        ("disconnected", 0), ("reconnecting", 1), ("reconnecting", 2), ("reconnecting", 3),
        ("connected", 0), "F3", "F4", "F5",
    ]
    assert [int(i.image[0, 0, 0]) for i in items if isinstance(i, Frame)] == [10, 11, 12, 20, 21, 22]
    assert "after 3 attempts" in items[9].message
    assert src.stats.reconnects == 1
    assert not src.running
    assert cam.opens == 4 and cam.closes == 4  # every reader closed, failed opens included


@pytest.mark.timeout(20)
def test_gives_up_after_max_attempts() -> None:
    cam = FakeCamera([])  # every open fails
    src = live_source(cam, max_attempts=3, **FAST)
    with src:
        items = collect(src, last_state(S.FAILED))
        assert src.get(0.5) is None  # ended: no more items, and get() returns at once
    assert describe(items) == [("connecting", 0), ("reconnecting", 1), ("reconnecting", 2),
                               ("reconnecting", 3), ("failed", 0)]
    assert "gave up on fake camera after 3 reconnect attempts" in items[-1].message
    assert cam.opens == 4
    assert src.state is S.FAILED and not src.running


@pytest.mark.timeout(20)
def test_stop_does_not_hang_on_a_blocked_read() -> None:
    cam = FakeCamera([([img(1)], True)])
    src = live_source(cam)
    src.start()
    assert cam.holding.wait(10)
    t0 = time.monotonic()
    src.stop(timeout=0.3)  # the read is stuck for up to 30 s: stop must give up waiting
    assert time.monotonic() - t0 < 2.0
    cam.release.set()
    src._thread.join(5)
    assert not src.running


@pytest.mark.timeout(20)
def test_stop_during_backoff_wait_is_prompt() -> None:
    cam = FakeCamera([])
    src = live_source(cam, reconnect_initial=30.0, reconnect_max=30.0)
    src.start()
    collect(src, last_state(S.RECONNECTING))
    t0 = time.monotonic()
    src.stop()
    assert time.monotonic() - t0 < 2.0 and not src.running


@pytest.mark.timeout(20)
def test_stop_wakes_a_producer_blocked_on_a_full_file_queue() -> None:
    cam = FakeCamera([([img(i % 250) for i in range(1000)], False)])
    src = CaptureSource(cam.factory, source_id="f", description="fake file", live=False, reconnect=False,
                        open_in_start=True, options=SourceOptions(file_queue=1))
    src.start()
    deadline = time.monotonic() + 5
    while cam.reads < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert cam.reads == 2  # one frame queued, the second read waits for room: back-pressure
    t0 = time.monotonic()
    src.stop()
    assert time.monotonic() - t0 < 2.0 and not src.running
    assert src.stats.frames_dropped == 0


@pytest.mark.timeout(20)
def test_bad_frames_are_converted_or_skipped_with_reasons() -> None:
    gray = np.arange(24, dtype=np.uint8).reshape(4, 6)
    bgra = np.dstack([img(50), np.full((4, 6), 9, np.uint8)])
    script = [
        img(1),  # 0 ok
        gray,  # 1 (H, W) gray
        gray[:, :, None],  # 2 (H, W, 1) gray
        bgra,  # 3 BGRA
        np.zeros((0, 0, 3), np.uint8),  # 4 empty
        None,  # 5 no image
        np.zeros((4, 6, 3), np.float32),  # 6 bad dtype
        np.zeros((4, 6, 2), np.uint8),  # 7 two channels
        (np.full((4, 6), 0x1234, np.uint16)),  # 8 16-bit gray
        lambda: ReadResult(None, skip_reason="decoder_error"),  # 9 the reader knows
        img(2),  # 10 ok
    ]
    cam = FakeCamera([(script, False)])
    src = CaptureSource(cam.factory, source_id="f", description="fake file", live=False, reconnect=False,
                        open_in_start=True)
    with src:
        items = collect(src, last_state(S.END_OF_STREAM))
    frames = [i for i in items if isinstance(i, Frame)]
    assert [f.index for f in frames] == [0, 1, 2, 3, 8, 10]
    assert all(f.image.shape == (4, 6, 3) and f.image.dtype == np.uint8 for f in frames)
    np.testing.assert_array_equal(frames[1].image, np.repeat(gray[:, :, None], 3, axis=2))
    np.testing.assert_array_equal(frames[2].image, frames[1].image)
    np.testing.assert_array_equal(frames[3].image, img(50))
    np.testing.assert_array_equal(frames[4].image, np.full((4, 6, 3), 0x12, np.uint8))
    assert src.stats.skip_reasons == {"empty": 1, "none": 1, "dtype_float32": 1, "channels_2": 1,
                                      "decoder_error": 1}
    assert src.stats.frames_skipped == 5
    assert src.stats.conversions == {"gray": 2, "bgra": 1, "uint16+gray": 1}
    assert src.stats.frames_read == 11


@pytest.mark.timeout(20)
def test_reader_crash_becomes_a_failed_event(caplog: pytest.LogCaptureFixture) -> None:
    def boom() -> ReadResult:
        raise RuntimeError("decoder exploded on rtsp://u:topsecret@h/x")

    cam = FakeCamera([([img(1), boom], False)])
    src = live_source(cam)
    with caplog.at_level(logging.DEBUG, logger="stream.sources"), src:
        items = collect(src, last_state(S.FAILED))
    assert describe(items) == [("connecting", 0), ("connected", 0), "F0", ("failed", 0)]
    assert "RuntimeError: decoder exploded on rtsp://u:***@h/x" in items[-1].message
    assert isinstance(src.error, RuntimeError)
    assert "topsecret" not in caplog.text and "topsecret" not in items[-1].message
    assert cam.closes == 1 and not src.running


@pytest.mark.timeout(30)
def test_credentialed_unreachable_url_never_shows_the_password(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    url = "rtsp://user:secret@127.0.0.1:9/x?token=tok123"
    with caplog.at_level(logging.DEBUG):
        src = open_source(url, options=SourceOptions(max_attempts=2, open_timeout=2, read_timeout=2, **FAST))
        with src:
            items = collect(src, last_state(S.FAILED), timeout=20)
    assert [e.state for e in items] == [S.CONNECTING, S.RECONNECTING, S.RECONNECTING, S.FAILED]
    assert src.source_id == "rtsp://user:***@127.0.0.1:9/x?token=***"
    assert items[-1].message.startswith("gave up on rtsp://user:***@127.0.0.1:9/x?token=*** after 2")
    out, err = capfd.readouterr()  # FFmpeg/OpenCV native messages too
    shown = [caplog.text, repr(items), repr(src), str(src.stats), out, err]
    for text in shown:
        assert "secret" not in text and "tok123" not in text
    assert "user:***@" in caplog.text
    # the same URL, malformed or with an unsupported scheme: the error hides it too
    for bad in ["rtsp://user:secret@", "gopher://user:secret@h/x"]:
        with pytest.raises(UserError) as exc:
            open_source(bad)
        assert "secret" not in str(exc.value) and "user:***@" in str(exc.value)
    # an explicit source_id that quotes the URL is redacted as well
    assert open_source(url, source_id=f"cam {url}").source_id == "cam rtsp://user:***@127.0.0.1:9/x?token=***"


@pytest.mark.timeout(20)
def test_missing_webcam_is_a_user_error() -> None:
    src = open_source("97")
    assert src.source_id == "webcam:97"
    with pytest.raises(UserError, match="cannot open webcam 97"):
        src.start()
    src.stop()


def test_get_before_start_is_an_error() -> None:
    src = live_source(FakeCamera([]))
    with pytest.raises(RuntimeError, match="start"):
        src.get(0.01)
