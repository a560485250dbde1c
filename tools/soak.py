"""Soak run: the full pipeline fed at twice its sustainable rate for N minutes.

A live-like paced source (drop-oldest, buffer 1) replays the sample clip at 2x the rate the
pipeline sustains (measured first, or ``--fps``). Every ``--every`` seconds it prints the
process RSS, the interval's output FPS, latency p50/p95 and the drops so far. At the end
it checks the targets: RSS growth after warm-up < 5%, and latency that does not grow
(p95 of the last interval within 1.5x of the first post-warm-up one, or 20 ms). The
"CPU ms/frame" column (this process's CPU time per rendered frame) tells a slowdown of our
own (it grows) from other processes taking the shared CPU (it stays flat while FPS falls).

    nice python tools/soak.py --minutes 2 [--size 1280x720] [--mode frame] [--video out/soak.mp4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from stream.config import WorkerConfig, from_dict  # noqa: E402
from stream.overlay import build_annotators  # noqa: E402
from stream.pipeline import SAMPLE_CLIP, Pipeline  # noqa: E402
from stream.processor import Processor  # noqa: E402
from stream.sinks import EventsSink, VideoSink  # noqa: E402
from tools.bench_stream import get_backend  # noqa: E402
from tools.paced_source import PacedSource, load_frames  # noqa: E402


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux /proc)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _cuda_mb() -> float | None:
    """CUDA memory held by tensors (MB), or None without CUDA: growth here is a device-side leak."""
    import torch

    return torch.cuda.memory_allocated() / 2**20 if torch.cuda.is_available() else None


def run(
    proc: Processor, images, fps: float, seconds: float, sinks, every: float = 10.0, bs: int = 1, quiet: bool = False
) -> list[dict]:
    src = PacedSource(images, fps, "soak", buffer=1, duration_s=seconds)
    pipe = Pipeline([src], proc.process, sinks=sinks, batch_size=bs, batch_timeout_s=0.01, class_names=proc.class_names)
    pipe.annotators = build_annotators(from_dict({}).overlay, pipe.summary.monitor)
    rows: list[dict] = []
    lat: list[float] = []
    lock = threading.Lock()
    t0 = time.monotonic()
    state = {"next": t0 + every, "frames": 0, "cpu": sum(os.times()[:2])}

    def on_result(r, latency):
        with lock:
            lat.append(latency)
            state["frames"] += 1
            now = time.monotonic()
            if now >= state["next"]:
                arr = np.array(lat) * 1000.0
                cpu = sum(os.times()[:2])
                cpu_ms = 1000.0 * (cpu - state["cpu"]) / max(1, len(arr))
                state["cpu"] = cpu
                row = {
                    "cuda_mb": _cuda_mb(),
                    "t": now - t0,
                    "cpu_ms": cpu_ms,
                    "rss_mb": rss_mb(),
                    "fps": len(arr) / every,
                    "p50": float(np.percentile(arr, 50)),
                    "p95": float(np.percentile(arr, 95)),
                    "dropped": src.stats.frames_dropped,
                    "read": src.stats.frames_read,
                }
                rows.append(row)
                if not quiet:
                    print(
                        f"{row['t']:7.0f} | {row['rss_mb']:7.1f} | {row['fps']:5.1f} | {row['p50']:6.0f} | "
                        f"{row['p95']:6.0f} | {row['cpu_ms']:7.0f} | {row['dropped']:6d} / {row['read']}",
                        flush=True,
                    )
                lat.clear()
                state["next"] += every

    pipe.on_result = on_result
    pipe.run()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--mode", default="frame", choices=("frame", "faces"))
    ap.add_argument("--method", default="haycam+")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fps", type=float, default=None, help="input rate (default: 2x the measured sustainable rate)")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between report lines")
    ap.add_argument("--video", default=None, help="also write the annotated video here (tests the writer over time)")
    ap.add_argument("--json", default=None, help="also write the report rows and verdict as JSON here")
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.lower().split("x"))
    images = load_frames(SAMPLE_CLIP, (w, h), limit=100)
    backend, note = get_backend(a.checkpoint, a.device, images)
    detector = None
    if a.mode == "faces":
        from stream.pipeline import create_detector

        detector = create_detector(None)
    proc = Processor(backend, WorkerConfig(method=a.method, mode=a.mode, batch_size=1), detector)
    tmp = Path(tempfile.mkdtemp(prefix="soak_"))
    if a.fps is None:  # sustainable rate: what the pipeline renders when fed faster than it can go
        warm = run(proc, images, 1000.0, 6.0, [], every=3.0, quiet=True)
        sustainable = warm[-1]["fps"] if warm else 10.0
        fps = 2.0 * sustainable
        print(f"# sustainable ~{sustainable:.1f} FPS -> input at {fps:.1f} FPS")
    else:
        fps = a.fps
    print(f"# soak {a.minutes} min, {w}x{h}, mode {a.mode}, model {note}, input {fps:.1f} FPS, pid {os.getpid()}")
    print("      t s |  RSS MB |   FPS | p50 ms | p95 ms | CPU ms/frame | dropped / read")
    sinks = [EventsSink(tmp / "soak.jsonl")]
    if a.video:
        sinks.append(VideoSink(a.video, ["soak"], {"soak": fps / 2}))
    rows = run(proc, images, fps, a.minutes * 60.0, sinks, every=a.every)
    if len(rows) < 3:
        print("# too short for a verdict")
        return 0
    warm = max(1, len(rows) // 5)
    base, last = rows[warm], rows[-1]
    growth = (last["rss_mb"] - base["rss_mb"]) / base["rss_mb"] * 100.0
    lat_ok = last["p95"] <= max(1.5 * base["p95"], base["p95"] + 20.0)
    print(
        f"# RSS after warm-up {base['rss_mb']:.1f} MB -> end {last['rss_mb']:.1f} MB: {growth:+.1f}% "
        f"({'OK' if growth < 5 else 'ABOVE TARGET'} < 5%)"
    )
    print(
        f"# latency p95 {base['p95']:.0f} ms -> {last['p95']:.0f} ms ({'OK, not growing' if lat_ok else 'GROWING'}); "
        f"dropped {last['dropped']} of {last['read']} frames ({100 * last['dropped'] / max(1, last['read']):.0f}%, "
        f"expected ~50% at 2x input)"
    )
    if base.get("cuda_mb") is not None:
        print(f"# CUDA memory allocated {base['cuda_mb']:.1f} MB after warm-up -> {last['cuda_mb']:.1f} MB at the end")
    if a.json:
        import json

        with open(a.json, "w") as f:
            json.dump({"device": a.device, "mode": a.mode, "size": a.size, "input_fps": fps, "rows": rows,
                       "rss_growth_pct": growth, "latency_ok": lat_ok}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
