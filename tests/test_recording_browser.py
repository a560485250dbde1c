"""The recordings play in a browser: the system Chromium (driven by Playwright) plays our H.264 fragmented
MP4, also when it was cut short like a crashed run leaves it, and refuses mp4v (why H.264 is the default).
Skips with the reason when Chromium or Playwright is absent."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from stream.sinks.encoder import VideoEncoder  # noqa: E402
from tests._recording_fakes import index_image  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

PLAY = """async () => { const v = document.getElementById('v');
  for (let i = 0; i < 100 && v.readyState < 2 && !v.error; i++) await new Promise(r => setTimeout(r, 100));
  if (v.readyState < 2) return {error: v.error ? v.error.code : -1};
  await v.play(); await new Promise(r => setTimeout(r, 1200));
  return {w: v.videoWidth, h: v.videoHeight, t: v.currentTime,
          frames: v.getVideoPlaybackQuality().totalVideoFrames}; }"""


def _video(path: Path, codec: str, n: int = 50) -> Path:
    enc = VideoEncoder(path, (320, 240), 25.0, codec)
    for i in range(n):
        enc.write(index_image(i, (320, 240)))
    enc.close()
    return path


@pytest.mark.timeout(120)
def test_chromium_plays_h264_even_truncated_and_refuses_mp4v(tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium on this machine (.ci/system-deps installs it)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    h264 = _video(tmp_path / "h264.mp4", "h264")
    cut = tmp_path / "cut.mp4"
    data = h264.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.75)])  # what a SIGKILL mid-fragment leaves
    mp4v = _video(tmp_path / "mp4v.mp4", "mp4v")
    results = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            for f in (h264, cut, mp4v):
                page_file = tmp_path / f"{f.stem}.html"
                page_file.write_text(f'<video id=v muted preload=auto src="{f.name}"></video>')
                page.goto(page_file.as_uri())
                results[f.name] = page.evaluate(PLAY)
        finally:
            browser.close()
    for name in ("h264.mp4", "cut.mp4"):
        r = results[name]
        assert (r.get("w"), r.get("h")) == (320, 240), results
        assert r["t"] > 0.3 and r["frames"] > 5, results  # it played, frames were decoded
    assert results["mp4v.mp4"] == {"error": 4}, results  # MEDIA_ERR_SRC_NOT_SUPPORTED
