"""Cost of serving and of alerting, as pipeline FPS measured in one invocation (configurations interleaved,
each repeated; medians and ratios against the baseline of the same invocation).

  serving:  0, 1 and 4 MJPEG viewers reading /sources/<id>.mjpg as fast as they can
  alerting: no alerts, vs webhook alerts to a receiver that hangs on every request (timeouts, retries)

    python tools/bench_serve.py [--seconds 20] [--repeats 2] [--checkpoint PATH] [--only serve|alerts]

Every run is ``maskstream run --loop --serve 0`` on the bundled sample clip, headless. After a warm-up, a
window of ``--seconds`` is measured: FPS from the run's frame counter (/api/status), and CPU ms per frame from
the run process's own user+system time (/proc; the better number on a shared, loaded machine, since other
processes' load does not enter it). Start-up and shutdown are outside the window.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "core" / "assets" / "samples" / "sample.mp4"


def _viewer(url: str, stop: threading.Event, counts: list[int], k: int) -> None:
    import httpx

    try:
        with httpx.Client(timeout=30).stream("GET", url) as r:
            for chunk in r.iter_bytes():
                counts[k] += chunk.count(b"--frame")
                if stop.is_set():
                    return
    except Exception:  # noqa: BLE001 - the run ended under the viewer
        return


def _cpu_s(pid: int) -> float:
    """user + system CPU seconds of process ``pid`` (all its threads) from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _frames_out(base: str) -> int:
    import httpx

    st = httpx.get(base + "/api/status", timeout=10).json()
    return sum(s["frames_out"] for s in st["sources"])


def one_run(args, workdir: Path, viewers: int = 0, config: str = "") -> dict:
    """One ``maskstream run --loop --serve 0``: warm up, then FPS and CPU per frame over a steady window."""
    import httpx

    cfg = workdir / "bench.yaml"
    cfg.write_text(config)
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--no-display", "--no-progress", "--source",
           str(SAMPLE), "--loop", "--config", str(cfg), "--serve", "0"]
    if args.checkpoint:
        cmd += ["--checkpoint", args.checkpoint]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DISPLAY", None)
    proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    stop, counts, err, base = threading.Event(), [0] * viewers, [], ""
    for line in proc.stderr:
        err.append(line)
        if "web view at " in line:
            base = line.split("web view at ", 1)[1].strip().rstrip("/")
            break
    rest = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    rest.start()
    if not base:
        raise SystemExit("run failed:\n" + "".join(err[-20:]))
    key = None
    while key is None:
        srcs = httpx.get(base + "/api/status", timeout=10).json()["sources"]
        key = srcs[0]["mjpeg"] if srcs else time.sleep(0.05)
    for k in range(viewers):
        threading.Thread(target=_viewer, args=(base + key, stop, counts, k), daemon=True).start()
    while _frames_out(base) < args.warmup:
        time.sleep(0.2)
    f1, c1, t1, v1 = _frames_out(base), _cpu_s(proc.pid), time.monotonic(), sum(counts)
    time.sleep(args.seconds)
    f2, c2, t2, v2 = _frames_out(base), _cpu_s(proc.pid), time.monotonic(), sum(counts)
    proc.send_signal(signal.SIGINT)
    proc.wait(120)
    stop.set()
    rest.join(5)
    alerts = next((ln.strip().split(": ", 1)[-1] for ln in err if "alerts: raised" in ln), "")
    n = max(1, f2 - f1)
    return {"fps": (f2 - f1) / (t2 - t1), "cpu_ms": 1000.0 * (c2 - c1) / n, "viewer_fps": (v2 - v1) / (t2 - t1),
            "alerts": alerts}


class _Hanging(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        time.sleep(5.0)  # never answers in time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="measured window per run, after the warm-up")
    ap.add_argument("--warmup", type=int, default=30, help="frames processed before the window opens")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--checkpoint", default=None, help="default: the shipped model")
    ap.add_argument("--only", choices=("serve", "alerts"), default=None)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="maskstream-bench-serve-"))
    rec = ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    rec.daemon_threads = True
    threading.Thread(target=rec.serve_forever, daemon=True).start()
    hook = f"http://127.0.0.1:{rec.server_address[1]}/hook"
    configs = []
    if args.only in (None, "serve"):
        configs += [("serve", "0 viewers", 0, ""), ("serve", "1 viewer", 1, ""), ("serve", "4 viewers", 4, "")]
    if args.only in (None, "alerts"):
        configs += [("alerts", "no alerts", 0, ""),
                    ("alerts", "webhook, receiver hangs", 0,
                     f"sinks:\n  alerts:\n    fallback_frames: 1\n    limits:\n      max_alerts: 0\n    flush_s: 1.0\n"
                     f"    webhook:\n      url: {hook}\n      timeout_s: 1.0\n      backoff_initial_s: 0.1\n"
                     f"      backoff_max_s: 0.5\n")]
    results: dict[str, list[dict]] = {c[1]: [] for c in configs}
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} (shared); {args.seconds:g} s window per run")
    for rep in range(args.repeats):
        for group, name, viewers, cfg in configs:
            r = one_run(args, work, viewers, cfg)
            results[name].append(r)
            print(f"  rep {rep + 1} {group:6s} {name:24s} {r['fps']:6.2f} FPS {r['cpu_ms']:7.1f} CPU ms/frame"
                  f"  viewers got {r['viewer_fps']:5.1f} frames/s"
                  f"  {r['alerts']}", flush=True)
    print(f"\n{'group':7s} {'configuration':26s} {'median FPS':>10s} {'ratio':>7s} {'CPU ms/frame':>13s} {'ratio':>7s}")
    base: dict[str, tuple[float, float]] = {}
    for group, name, _, _ in configs:
        med = statistics.median(r["fps"] for r in results[name])
        cpu = statistics.median(r["cpu_ms"] for r in results[name])
        base.setdefault(group, (med, cpu))
        print(f"{group:7s} {name:26s} {med:10.2f} {med / base[group][0]:7.3f} {cpu:13.1f} {cpu / base[group][1]:7.3f}")
    print(f"(load average at the end: {os.getloadavg()[0]:.1f})")
    rec.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
