"""Benchmark: frames/s read from the local RTSP server, and reconnect time after a server restart.

    python tools/bench_rtsp.py [--seconds 5] [--cycles 3] [--fps 30] [--size 320x240]

Starts tools/rtsp_server.py (system Python, needs .ci/system-deps), then prints:
* steady-state frames/s of a bare ``cv2.VideoCapture`` read loop (baseline) and of
  ``stream.sources.open_source`` (capture thread + drop-oldest buffer + consumer), and their ratio;
* for each cycle: kill the server, wait, restart it on the same port, and time restart -> CONNECTED
  event and restart -> first frame (includes the backoff wait and waiting for a key frame).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402

from stream.frames import Frame, SourceEvent, SourceState  # noqa: E402
from stream.sources import SourceOptions, open_source  # noqa: E402
from tools.rtsp_server import RtspServerProcess, free_port, unavailable_reason  # noqa: E402

WARMUP_S = 1.5  # skip the burst of frames FFmpeg buffered while probing the stream


def bare_fps(url: str, seconds: float) -> float:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 5000,
                                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2000])
    try:
        if not cap.isOpened():
            raise SystemExit(f"cannot open {url}")
        t_end = time.monotonic() + WARMUP_S
        while time.monotonic() < t_end:
            cap.read()
        n, t0 = 0, time.monotonic()
        while time.monotonic() - t0 < seconds:
            ok, _ = cap.read()
            n += ok
        return n / (time.monotonic() - t0)
    finally:
        cap.release()


def source_fps(url: str, seconds: float) -> tuple[float, int]:
    with open_source(url, options=SourceOptions(read_timeout=2.0)) as src:
        t_end = time.monotonic() + WARMUP_S + 5.0
        started = None
        n = 0
        while time.monotonic() < t_end:
            item = src.get(0.5)
            if isinstance(item, Frame):
                if started is None:
                    started = time.monotonic()
                    t_end = started + WARMUP_S + seconds
                elif time.monotonic() - started >= WARMUP_S:
                    if n == 0:
                        t0 = time.monotonic()
                    n += 1
        return (n - 1) / (time.monotonic() - t0) if n > 1 else 0.0, src.stats.frames_dropped


def reconnect_cycles(server: RtspServerProcess, cycles: int, down_s: float) -> list[tuple[float, float, int]]:
    opts = SourceOptions(read_timeout=2.0, reconnect_initial=0.2, reconnect_max=0.5, reconnect_jitter=0.1, seed=0)
    out = []
    with open_source(server.url, options=opts) as src:
        _wait_for(src, lambda i: isinstance(i, Frame), 20)
        for _ in range(cycles):
            server.kill()
            _wait_for(src, lambda i: isinstance(i, SourceEvent) and i.state is SourceState.RECONNECTING, 20)
            time.sleep(down_s)
            server.start()
            t_restart = time.monotonic()
            ev = _wait_for(src, lambda i: isinstance(i, SourceEvent) and i.state is SourceState.CONNECTED, 30)
            fr = _wait_for(src, lambda i: isinstance(i, Frame), 20)
            out.append((ev.time - t_restart, fr.capture_time - t_restart, src.stats.reconnects))
    return out


def _wait_for(src, pred, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = src.get(0.5)
        if item is not None and pred(item):
            return item
    raise SystemExit("timed out (is the server running?)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--cycles", type=int, default=3)
    p.add_argument("--down", type=float, default=1.0, help="seconds the server stays down per cycle")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--size", default="320x240")
    args = p.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"cannot benchmark: {reason}", file=sys.stderr)
        return 3
    w, h = (int(v) for v in args.size.split("x"))
    server = RtspServerProcess(free_port(), ["--fps", str(args.fps), "--width", str(w), "--height", str(h)])
    try:
        server.start()
        base = bare_fps(server.url, args.seconds)
        ours, dropped = source_fps(server.url, args.seconds)
        cycles = reconnect_cycles(server, args.cycles, args.down)
    finally:
        server.kill()
    print(f"RTSP test pattern {w}x{h} @ {args.fps} fps, {args.seconds:.0f} s after {WARMUP_S} s warm-up")
    print(f"{'reader':<28}{'frames/s':>10}{'ratio':>8}")
    print(f"{'cv2.VideoCapture loop':<28}{base:>10.1f}{1.0:>8.2f}")
    print(f"{'open_source (thread+buffer)':<28}{ours:>10.1f}{ours / base if base else 0:>8.2f}"
          f"   (dropped {dropped}: consumer keeps up)")
    print(f"\nreconnect after restart ({args.down:.1f} s down, backoff 0.2..0.5 s):")
    print(f"{'cycle':<8}{'->CONNECTED s':>15}{'->first frame s':>17}")
    for k, (c, f, _) in enumerate(cycles, 1):
        print(f"{k:<8}{c:>15.2f}{f:>17.2f}")
    print(f"{'median':<8}{statistics.median(c for c, _, _ in cycles):>15.2f}"
          f"{statistics.median(f for _, f, _ in cycles):>17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
