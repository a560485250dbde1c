"""File and image-folder sources: every frame exactly once, in order; errors name the path."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from stream.errors import UserError
from stream.frames import Frame, SourceEvent, SourceState
from stream.sources import SourceKind, SourceOptions, open_source, parse_spec

N_FRAMES = 24
FPS = 25.0


def _level(i: int) -> int:
    return 8 + 10 * i  # distinct grey levels, far apart so mp4v's loss can't confuse them


def make_video(path: Path, n: int = N_FRAMES, fps: float = FPS, size: tuple[int, int] = (64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened(), "cv2.VideoWriter(mp4v) unavailable"
    for i in range(n):
        writer.write(np.full((size[1], size[0], 3), _level(i), np.uint8))
    writer.release()
    return path


def drain(src, timeout: float = 5.0) -> list:
    """Every item until the source ends (get returns None)."""
    items = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = src.get(1.0)
        if item is None:
            return items
        items.append(item)
    raise AssertionError("source did not end in time")


def frames_of(items: list) -> list[Frame]:
    return [i for i in items if isinstance(i, Frame)]


def states_of(items: list) -> list[SourceState]:
    return [i.state for i in items if isinstance(i, SourceEvent)]


@pytest.mark.timeout(30)
def test_file_delivers_every_frame_once_in_order(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4")
    # a tiny queue and a slow consumer: back-pressure must not lose or duplicate frames
    with open_source(str(video), options=SourceOptions(file_queue=2)) as src:
        items = []
        while (item := src.get(2.0)) is not None:
            items.append(item)
            time.sleep(0.002)
    frames = frames_of(items)
    assert [f.index for f in frames] == list(range(N_FRAMES))
    # mp4v shifts grey levels a little (limited-range YUV); the nearest written level must be i
    written = np.array([_level(i) for i in range(N_FRAMES)])
    nearest = [int(np.abs(written - float(f.image.mean())).argmin()) for f in frames]
    assert nearest == list(range(N_FRAMES))
    assert [f.pos_ms for f in frames] == pytest.approx([i * 1000.0 / FPS for i in range(N_FRAMES)], abs=1.0)
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(f.source_id == str(video) for f in frames)
    times = [f.capture_time for f in frames]
    assert times == sorted(times)
    assert states_of(items) == [SourceState.CONNECTING, SourceState.CONNECTED, SourceState.END_OF_STREAM]
    assert isinstance(items[-1], SourceEvent)  # the end comes after the last frame
    assert src.stats.frames_read == N_FRAMES and src.stats.frames_dropped == 0
    assert src.state is SourceState.END_OF_STREAM
    assert src.fps == pytest.approx(FPS)


@pytest.mark.timeout(30)
def test_file_loop_restarts_and_keeps_counting(tmp_path: Path) -> None:
    video = make_video(tmp_path / "clip.mp4", n=5)
    with open_source(str(video), source_id="cam-a", options=SourceOptions(loop=True)) as src:
        frames = []
        while len(frames) < 12:
            item = src.get(2.0)
            assert item is not None
            if isinstance(item, Frame):
                frames.append(item)
    assert [f.index for f in frames] == list(range(12))
    written = np.array([_level(i) for i in range(5)])
    assert [int(np.abs(written - float(f.image.mean())).argmin()) for f in frames] == [i % 5 for i in range(12)]
    assert [f.pos_ms for f in frames][:7] == pytest.approx([0, 40, 80, 120, 160, 0, 40], abs=1.0)
    assert {f.source_id for f in frames} == {"cam-a"}


@pytest.mark.timeout(30)
def test_file_fps_pacing_spaces_frames(tmp_path: Path) -> None:
    """Paced at 50 fps, 6 frames span at least 5 periods (a lower bound only: no speed assert)."""
    video = make_video(tmp_path / "clip.mp4", n=6)
    with open_source(str(video), options=SourceOptions(fps=50.0)) as src:
        frames = frames_of(drain(src))
    assert len(frames) == 6
    assert frames[-1].capture_time - frames[0].capture_time >= 5 * 0.02 - 0.005


def _write_images(folder: Path) -> list[np.ndarray]:
    """Five images, named so that plain sorting would misorder them, incl. gray and BGRA files."""
    folder.mkdir()
    images = []
    for i, name in enumerate(["f1.png", "f2.png", "f3.jpg", "f10.png", "f11.png"]):
        img = np.zeros((20, 30, 3), np.uint8)
        img[:, :, i % 3] = 40 * (i + 1)
        if name == "f2.png":  # gray file -> converted to BGR with equal channels
            img = np.full((20, 30), 77, np.uint8)
        if name == "f10.png":  # BGRA file -> alpha dropped
            img = np.dstack([img, np.full((20, 30), 128, np.uint8)])
        cv2.imwrite(str(folder / name), img)
        images.append(img)
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    return images


@pytest.mark.timeout(30)
def test_image_folder_natural_order_and_conversions(tmp_path: Path) -> None:
    originals = _write_images(tmp_path / "imgs")
    assert parse_spec(str(tmp_path / "imgs")).kind is SourceKind.FOLDER
    with open_source(str(tmp_path / "imgs")) as src:
        items = drain(src)
    frames = frames_of(items)
    # broken.png sorts first ("b" < "f"), is decoded as garbage -> skipped, but still took index 0
    assert [f.index for f in frames] == [1, 2, 3, 4, 5]
    assert src.stats.skip_reasons == {"unreadable_image": 1}
    assert src.stats.conversions == {"gray": 1, "bgra": 1}
    assert all(f.image.shape == (20, 30, 3) for f in frames)
    np.testing.assert_array_equal(frames[0].image, originals[0])  # f1.png, lossless
    np.testing.assert_array_equal(frames[1].image, np.full((20, 30, 3), 77, np.uint8))  # f2 gray
    assert abs(float(frames[2].image[:, :, 2].mean()) - 120) < 4  # f3.jpg (lossy), red channel
    np.testing.assert_array_equal(frames[3].image, originals[3][:, :, :3])  # f10 BGRA
    np.testing.assert_array_equal(frames[4].image, originals[4])  # f11 after f10: natural order
    assert all(f.pos_ms is None for f in frames)
    assert states_of(items)[-1] is SourceState.END_OF_STREAM


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing.mp4", "no such video file or image folder: {p}"),
        (lambda p: (p / "empty").mkdir() or p / "empty", "no images in folder {p}"),
    ],
    ids=["missing", "empty-folder"],
)
def test_open_errors_name_the_path(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    with pytest.raises(UserError) as exc:
        open_source(str(path))
    assert message.format(p=path) in str(exc.value)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("content", [b"hello, not a video\n" * 50, b""], ids=["text", "empty"])
def test_non_video_file_fails_at_start_naming_it(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "fake.mp4"
    path.write_bytes(content)
    src = open_source(str(path))
    with pytest.raises(UserError, match=str(path)):
        src.start()
    # the failure is also on the event stream, then the source has ended
    assert [src.get(0.1).state for _ in range(2)] == [SourceState.CONNECTING, SourceState.FAILED]
    assert src.get(0.1) is None
    src.stop()
    assert src.state is SourceState.FAILED


def test_unreadable_folder_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()

    def _denied(self):  # root ignores chmod, so simulate the OS refusing the listing
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", _denied)
    with pytest.raises(UserError, match=f"cannot read image folder {folder}: Permission denied"):
        open_source(str(folder))


@pytest.mark.parametrize(
    ("spec", "kind", "safe"),
    [
        ("0", SourceKind.WEBCAM, "webcam:0"),
        ("12", SourceKind.WEBCAM, "webcam:12"),
        ("rtsp://u:pw@cam/x", SourceKind.NETWORK, "rtsp://u:***@cam/x"),
        ("http://cam/video.mjpg", SourceKind.NETWORK, "http://cam/video.mjpg"),
        ("https://h/s.m3u8?token=abc", SourceKind.NETWORK, "https://h/s.m3u8?token=***"),
    ],
)
def test_parse_spec(spec: str, kind: SourceKind, safe: str) -> None:
    parsed = parse_spec(spec)
    assert (parsed.kind, parsed.safe_name) == (kind, safe)
    assert "pw" not in repr(parsed) and "abc" not in repr(parsed)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("", "empty source spec"),
        ("ftp://u:pw@h/x", r"unsupported URL scheme 'ftp' in ftp://u:\*\*\*@h/x"),
        ("rtsp:///nohost", "has no host"),
    ],
)
def test_bad_specs(spec: str, match: str) -> None:
    with pytest.raises(UserError, match=match) as exc:
        parse_spec(spec)
    assert "pw" not in str(exc.value)
