"""Make docs/web_view.png: ``maskstream run --serve`` on the bundled sample clip with the shipped model,
opened in Debian's chromium through Playwright (the system browser; nothing is downloaded).

    python tools/web_screenshot.py [--out docs/web_view.png] [--seconds 12]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "core" / "assets" / "samples" / "sample.mp4"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs" / "web_view.png"))
    ap.add_argument("--seconds", type=float, default=12.0, help="run this long before the screenshot")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--fps", type=float, default=10.0, help="pace the clip (a live-like camera)")
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DISPLAY", None)
    cfg = Path("/tmp") / f"maskstream-shot-{os.getpid()}.yaml"
    cfg.write_text(f"sources:\n  fps: {args.fps}\n")
    proc = subprocess.Popen([sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--no-progress",
                             "--source", str(SAMPLE), "--loop", "--serve", "0", "--config", str(cfg)],
                            cwd="/tmp", env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    url: list[str] = []
    ready = threading.Event()

    def drain() -> None:
        for line in proc.stderr:
            if "web view at " in line and not url:
                url.append(line.split("web view at ", 1)[1].strip())
                ready.set()
        ready.set()

    threading.Thread(target=drain, daemon=True).start()
    try:
        if not ready.wait(120) or not url:
            print("run did not start its web view", file=sys.stderr)
            return 1
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url[0])
            page.locator("article.card").first.wait_for(timeout=60_000)
            time.sleep(args.seconds)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
        print(f"wrote {args.out}")
        return 0
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        cfg.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
