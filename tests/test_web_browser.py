"""A real browser on the live web view: Debian's chromium driven by Playwright (pointed at the system
browser; nothing is downloaded) opens ``/`` while ``maskstream run`` processes a looping clip. The live
image must update, the page's counts must match the events file, and a screenshot is saved.

Skips when chromium or Playwright is absent. ``MASKSTREAM_WEB_SCREENSHOT=path`` also copies the screenshot
there (``tools/web_screenshot.py`` makes docs/web_view.png the same way with the shipped model)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tests._headless import CHROMIUM, start_run, stop_run  # noqa: E402
from tests._stream_fakes import save_seeded_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "core" / "assets" / "samples" / "sample.mp4"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.timeout(240), pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/system-deps)")]


def _counts_from_events(path: Path, source: str, k: int) -> tuple[Counter, Counter] | None:
    """Frame labels and box labels over the first ``k`` frame events of ``source`` (None: fewer yet)."""
    frames, boxes, n = Counter(), Counter(), 0
    for line in path.read_text().splitlines():
        try:
            e = json.loads(line)
        except json.JSONDecodeError:  # a line being written
            break
        if e.get("source") != source:
            continue
        if e["type"] == "frame":
            if n == k:
                return frames, boxes
            n += 1
            if e["label"] is not None:
                frames[e["label"]] += 1
        elif e["type"] == "detection" and n <= k:
            boxes[e["label"]] += 1
    return None  # the k-th frame's boxes may still be unwritten: wait for the next frame event


def test_live_page_in_chromium(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (PyPI) is not installed")
    ckpt = save_seeded_checkpoint(tmp_path / "m.pt", input_size=64)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sources:\n  fps: 12\n")
    proc, url = start_run(["--checkpoint", str(ckpt), "--source", str(SAMPLE), "--loop", "--config", str(cfg),
                           "--events", "out/ev.jsonl"], tmp_path)
    shot = tmp_path / "web_view.png"
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 760})
                external = []
                page.on("request", lambda r: None if r.url.startswith(url) else external.append(r.url))
                page.goto(url + "/")
                card = page.locator("article.card").first
                card.wait_for(timeout=30_000)
                page.wait_for_function(
                    "() => { const c = document.querySelector('article.card'); return c && +c.dataset.frames > 10 }",
                    timeout=60_000)
                img = card.locator(".video img")
                page.wait_for_function("() => document.querySelector('.video img').naturalWidth > 0",
                                       timeout=30_000)
                a = img.screenshot()
                time.sleep(1.5)
                b = img.screenshot()
                assert a != b, "the live image did not change in 1.5 s"
                # one atomic read of what the page shows (one JS task: one status update)
                seen = page.evaluate("""() => {
                    const c = document.querySelector('article.card');
                    const chips = (sel, attr) => Object.fromEntries([...c.querySelectorAll(sel)].map(
                        (e) => [e.getAttribute(attr), +e.dataset.count]));
                    return {frames: +c.dataset.frames, source: c.querySelector('.name').title,
                            boxes: chips('[data-box]', 'data-box'), labels: chips('[data-frame]', 'data-frame'),
                            state: c.querySelector('.pill').textContent};
                }""")
                assert seen["state"] == "connected" and seen["frames"] > 10
                page.wait_for_timeout(1500)  # let a no-mask snapshot appear, if the clip has one
                page.screenshot(path=str(shot), full_page=True)
                assert external == [], f"the page asked the internet for {external}"
            finally:
                browser.close()
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            got = _counts_from_events(tmp_path / "out/ev.jsonl", seen["source"], seen["frames"])
            time.sleep(0.5)
        assert got is not None, "the events file never reached the page's frame count"
        frames, boxes = got
        assert dict(boxes) == seen["boxes"] and sum(boxes.values()) > 0
        assert dict(frames) == seen["labels"]
    finally:
        code, _, err = stop_run(proc, signal.SIGINT)
    assert code == 130, err
    assert shot.stat().st_size > 20_000
    target = os.environ.get("MASKSTREAM_WEB_SCREENSHOT")
    if target:
        shutil.copyfile(shot, target)
