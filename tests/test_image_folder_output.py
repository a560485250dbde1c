"""Image-folder runs: frame events carry each photo's file name, and ``--output DIR`` writes one annotated
image per photo under the photo's own name (a generated folder; the CLI as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.errors import UserError  # noqa: E402
from stream.sinks.images import ImageFolderOptions, ImageFolderSink, image_name, is_image_folder_output  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    return env


def _photo(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "name, index, expected",
    [
        ("a.jpg", 0, "a.jpg"),
        ("shot 10.PNG", 3, "shot 10.PNG"),
        ("anim.gif", 1, "anim.gif.png"),  # OpenCV cannot write GIF
        (None, 7, "000007.jpg"),  # video frames: the index
        ("../../etc/x.png", 0, "x.png"),  # never outside the folder
    ],
)
def test_image_name(name, index, expected):
    assert image_name(name, index) == expected


def test_output_kind_by_suffix():
    assert is_image_folder_output("out/photos") and is_image_folder_output("out/photos/")
    assert not is_image_folder_output("out/a.mp4") and not is_image_folder_output("x.AVI")


def test_video_sink_type_builds_the_image_folder_sink_for_a_folder(tmp_path):
    """``sinks.output`` without a suffix goes through the registered ``video`` type to the image-folder sink."""
    from stream.config import load_config
    from stream.pipeline import build_sinks
    from stream.sinks import VideoSink

    folder = load_config(None, {"sinks": {"output": str(tmp_path / "imgs")}})
    (sink,) = build_sinks(folder, ["s0"], {"s0": None})
    assert isinstance(sink, ImageFolderSink) and sink.dirs == {"s0": tmp_path / "imgs"}
    video = load_config(None, {"sinks": {"output": str(tmp_path / "v.mp4")}})
    (sink,) = build_sinks(video, ["s0"], {"s0": 25.0})
    assert isinstance(sink, VideoSink)
    sink.close()


def test_sink_writes_per_source_folders_and_refuses_a_file(tmp_path):
    from stream.frames import Frame

    class R:  # the sink only reads result.frame
        def __init__(self, frame):
            self.frame = frame

    img = _photo(20, 30, 0)
    with ImageFolderSink(ImageFolderOptions(str(tmp_path / "o")), ["s0", "s1"]) as sink:
        sink.write(R(Frame("s0", 0, img, 0.0, None, "p.png")), img)
        sink.write(R(Frame("s1", 4, img, 0.0, None, None)), img)
    assert (cv2.imread(str(tmp_path / "o" / "0" / "p.png")) == img).all()  # png: lossless
    assert cv2.imread(str(tmp_path / "o" / "1" / "000004.jpg")).shape == (20, 30, 3)
    assert not list((tmp_path / "o").rglob("*.part"))
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="not a folder"):
        ImageFolderSink(ImageFolderOptions(str(tmp_path / "f")), ["s0"])
    with pytest.raises(ValueError, match="jpeg_quality"):
        ImageFolderOptions("x", jpeg_quality=0)


@pytest.mark.timeout(150)
def test_folder_run_names_frames_and_writes_one_image_per_photo(tmp_path):
    ckpt = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    photos = tmp_path / "photos"
    photos.mkdir()
    sizes = {"img2.png": (60, 80), "img10.jpg": (90, 70), "group shot.bmp": (50, 120)}
    for k, (name, (h, w)) in enumerate(sizes.items()):
        assert cv2.imwrite(str(photos / name), _photo(h, w, k))
    (photos / "notes.txt").write_text("not an image")
    out, ev = tmp_path / "annotated", tmp_path / "ev.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--no-progress"]
        + ["--checkpoint", str(ckpt), "--source", str(photos), "--output", str(out), "--events", str(ev)],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=140,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in ev.read_text().splitlines()]
    frames = [e for e in events if e["type"] == "frame"]
    # natural name order: "group shot" < "img2" < "img10"
    assert [(e["frame_index"], e["name"]) for e in frames] == [(0, "group shot.bmp"), (1, "img2.png"), (2, "img10.jpg")]
    assert all(e["name"] == frames[e["frame_index"]]["name"] for e in events if e["type"] == "detection")
    assert sorted(p.name for p in out.iterdir()) == sorted(sizes)
    for name, (h, w) in sizes.items():
        written = cv2.imread(str(out / name))
        assert written is not None and written.shape == (h, w, 3), name
    original = cv2.imread(str(photos / "img2.png"))
    assert (cv2.imread(str(out / "img2.png")) != original).any(), "the written image is annotated, not a copy"
    assert not (tmp_path / "annotated.mp4").exists()
