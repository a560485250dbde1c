"""What recording costs: pipeline frames/s with and without the video/record/clip sinks, in one run.

Rows (each a full pipeline run over the same frames, display off, heatmap + boxes + HUD drawn):

* ``none``: no sink (the baseline).
* ``output h264`` / ``output mp4v``: ``--output`` (a file source: the pipeline waits for the encoder,
  so its whole cost shows up here).
* ``record h264``: ``--record`` (2 s segments, SQLite index).
* ``output+record+clips``: all three (clips are written whenever no-mask runs trigger).
* ``live none`` / ``live record``: a live-like source paced at ``--live-fps`` (drop-oldest): the
  record sink must not add latency; frames its writer could not take are dropped and counted.

``waited s`` is the time the pipeline thread was blocked by full writer queues; a slowdown with
no waiting is CPU the encoders took from inference (a machine with spare cores, or inference on a
GPU, pays neither). ``CPU ms/fr`` is the process's CPU time per frame (all threads), ``+CPU ms``
its difference to ``none``: what recording costs, less sensitive to a loaded machine than frames/s.

Configurations are interleaved ``--repeats`` times (ABCD ABCD) and the median frames/s is reported
with its ratio to ``none`` of the same run. ``encoder only`` rows time ``VideoEncoder`` alone.
``--crash`` instead measures what survives a SIGKILL for several container settings (the choice
made in ``stream/sinks/encoder.py``). Timings on a shared CPU vary: compare only within one run.

    python tools/bench_record.py [--size 640x480] [--frames 150] [--repeats 2] [--live-seconds 6]
    python tools/bench_record.py --crash
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from stream.frames import Frame, SourceEvent, SourceState, SourceStats  # noqa: E402

CRASH_CHILD = r"""
import sys, time, numpy as np
kind, path = sys.argv[1], sys.argv[2]
im0 = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
if kind == "opencv-mp4v":
    import cv2
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (320, 240))
    put = w.write
else:
    import av
    codec, opts = {
        "fmp4-flush": ("libx264", {"movflags": "frag_keyframe+empty_moov+default_base_moof", "flush_packets": "1"}),
        "fmp4": ("libx264", {"movflags": "frag_keyframe+empty_moov+default_base_moof"}),
        "mp4": ("libx264", {}),
        "mkv-flush": ("libx264", {"flush_packets": "1"}),
        "avi-mjpg-flush": ("mjpeg", {"flush_packets": "1"}),
    }[kind]
    c = av.open(path, "w", options=opts)
    s = c.add_stream(codec, rate=25)
    s.width, s.height, s.pix_fmt = 320, 240, "yuvj420p" if codec == "mjpeg" else "yuv420p"
    if codec == "libx264":
        s.options = {"preset": "veryfast", "tune": "zerolatency"}
    s.codec_context.gop_size = 25
    def put(im):
        for p in s.encode(av.VideoFrame.from_ndarray(im, format="bgr24")):
            c.mux(p)
for i in range(100000):
    put(np.roll(im0, i, 1))
    print(i, flush=True)
    time.sleep(0.04)
"""
CRASH_KINDS = {
    "fmp4-flush": ".mp4",
    "fmp4": ".mp4",
    "mp4": ".mp4",
    "mkv-flush": ".mkv",
    "avi-mjpg-flush": ".avi",
    "opencv-mp4v": ".mp4",
}


def crash_table(seconds: float) -> None:
    import av

    tmp = Path(tempfile.mkdtemp(prefix="bench_crash_"))
    print(f"# SIGKILL after {seconds:g} s of writing 320x240 at 25 fps (GOP 25); frames that decode afterwards")
    print(f"{'container':<16} {'written':>8} {'decoded':>8} {'lost':>6} {'lost s':>7}")
    for kind, ext in CRASH_KINDS.items():
        path = tmp / f"{kind}{ext}"
        p = subprocess.Popen([sys.executable, "-c", CRASH_CHILD, kind, str(path)], stdout=subprocess.PIPE, text=True)
        assert p.stdout is not None
        last, t0 = -1, time.monotonic()
        while time.monotonic() - t0 < seconds:
            line = p.stdout.readline()
            if not line:
                break
            last = int(line)
        p.send_signal(signal.SIGKILL)
        p.wait()
        try:
            with av.open(str(path)) as c:
                n = sum(1 for _ in c.decode(video=0))
        except (av.error.FFmpegError, OSError):
            n = 0
        written = last + 1
        print(f"{kind:<16} {written:>8} {n:>8} {written - n:>6} {(written - n) / 25:>7.2f}")


class MemorySource:
    """A file-like source from memory: every frame delivered (blocking), then END_OF_STREAM."""

    def __init__(self, frames: list[np.ndarray], n: int, source_id: str = "file") -> None:
        self.frames, self.n, self.source_id = frames, n, source_id
        self.live = False
        self.stats = SourceStats()
        self.state = SourceState.CONNECTING
        self._i = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        self.state = SourceState.CONNECTED

    def get(self, timeout: float):
        with self._lock:
            i = self._i
            self._i += 1
        if i < self.n:
            self.stats.frames_read += 1
            return Frame(self.source_id, i, self.frames[i % len(self.frames)], time.monotonic())
        if i == self.n:
            return SourceEvent(self.source_id, SourceState.END_OF_STREAM, time.monotonic(), "end")
        time.sleep(min(timeout, 0.01))
        return None

    def stop(self) -> None:
        pass


def make_sinks(kind: str, tmp: Path, sid: str, live: bool) -> list:
    from stream.sinks import VideoSink
    from stream.sinks.clips import ClipOptions, ClipSink
    from stream.sinks.record import RecordOptions, RecordSink

    d = Path(tempfile.mkdtemp(dir=tmp))
    fps = {sid: 25.0}
    lv = {sid: live}
    sinks: list = []
    if kind.startswith("output") or kind == "output+record+clips":
        codec = "mp4v" if kind == "output mp4v" else "h264"
        sinks.append(VideoSink(d / "o.mp4", [sid], fps, codec=codec, live=lv))
    if "record" in kind:
        sinks.append(RecordSink(RecordOptions(dir=str(d / "rec"), segment_s=2.0), [sid], fps, lv))
    if "clips" in kind:
        sinks.append(ClipSink(ClipOptions(dir=str(d / "clips")), [sid], fps, lv))
    return sinks


def run_once(proc, source, sinks, bs: int) -> tuple[float, float, int, int, float, float]:
    """(frames/s first->last rendered, latency p50 ms, frames out, frames dropped by writers,
    seconds the pipeline thread waited for the writers' queues, process CPU ms per frame)."""
    from stream.config import from_dict
    from stream.overlay import build_annotators
    from stream.pipeline import Pipeline

    stamps: list[float] = []
    pipe = Pipeline([source], proc.process, sinks=sinks, batch_size=bs, batch_timeout_s=0.02,
                    class_names=proc.class_names)
    pipe.annotators = build_annotators(from_dict({}).overlay, pipe.summary.monitor)
    pipe.on_result = lambda r, lat: stamps.append(time.monotonic())
    cpu0 = time.process_time()
    s = pipe.run()
    cpu_ms = 1000.0 * (time.process_time() - cpu0) / max(1, s.frames_out)
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    dropped = 0
    for k in sinks:
        dropped += sum(getattr(k, "frames_dropped", {}).values())
        dropped += sum(st.dropped for st in getattr(k, "stats", {}).values()) if hasattr(k, "stats") else 0
    waited = sum(getattr(k, "waited_s", 0.0) for k in sinks)
    return fps, s.latency_ms(50), s.frames_out, dropped, waited, cpu_ms


def encoder_only(images: list[np.ndarray], tmp: Path, n: int = 60) -> list[tuple[str, float]]:
    from stream.sinks.encoder import VideoEncoder

    out = []
    h, w = images[0].shape[:2]
    for codec in ("h264", "mp4v", "mjpg"):
        enc = VideoEncoder(tmp / f"enc_{codec}.mp4", (w, h), 25.0, codec)
        t = time.perf_counter()
        for i in range(n):
            enc.write(images[i % len(images)])
        enc.close()
        out.append((codec, n / (time.perf_counter() - t)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--frames", type=int, default=150, help="frames per file run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--live-fps", type=float, default=25.0)
    ap.add_argument("--live-seconds", type=float, default=6.0, help="0: skip the live rows")
    ap.add_argument("--crash", action="store_true", help="measure what survives a SIGKILL per container instead")
    ap.add_argument("--crash-seconds", type=float, default=4.0)
    a = ap.parse_args(argv)
    if a.crash:
        crash_table(a.crash_seconds)
        return 0

    import torch

    from stream.config import ThresholdConfig, WorkerConfig
    from stream.pipeline import SAMPLE_CLIP
    from stream.processor import Processor
    from tools.bench_stream import get_backend
    from tools.paced_source import PacedSource, load_frames

    w, h = (int(v) for v in a.size.lower().split("x"))
    images = load_frames(SAMPLE_CLIP, (w, h), limit=100)
    backend, note = get_backend(a.checkpoint, a.device, images)
    proc = Processor(backend, WorkerConfig(batch_size=a.batch_size, threshold=ThresholdConfig()), None)
    tmp = Path(tempfile.mkdtemp(prefix="bench_record_"))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# bench_record: {w}x{h}, {a.frames} frames/run, batch {a.batch_size}, device {a.device}, model {note}, "
          f"torch threads {torch.get_num_threads()}, CPU cores {os.cpu_count()}, load avg {load:.2f} at start")
    proc.process([Frame("w", 0, images[0], time.monotonic())])  # warm up
    kinds = ["none", "output h264", "output mp4v", "record h264", "output+record+clips"]
    res: dict[str, list[float]] = {k: [] for k in kinds}
    waits: dict[str, list[float]] = {k: [] for k in kinds}
    cpus: dict[str, list[float]] = {k: [] for k in kinds}
    live_kinds = ("none", "record h264") if a.live_seconds > 0 else ()
    live: dict[str, list[tuple[float, float, int, int]]] = {k: [] for k in live_kinds}
    for r in range(a.repeats):
        for k in kinds:
            fps, _, nout, dropped, waited, cpu_ms = run_once(
                proc, MemorySource(images, a.frames), make_sinks(k, tmp, "file", False), a.batch_size
            )
            assert nout == a.frames and dropped == 0, (k, nout, dropped)
            res[k].append(fps)
            waits[k].append(waited)
            cpus[k].append(cpu_ms)
        for k in live_kinds:
            src = PacedSource(images, a.live_fps, "live", buffer=1, duration_s=a.live_seconds)
            fps, p50, nout, dropped, _, _ = run_once(proc, src, make_sinks(k, tmp, "live", True), a.batch_size)
            live[k].append((fps, p50, src.stats.frames_dropped, dropped))
        print(f"  repeat {r + 1}/{a.repeats} done", flush=True)
    base = statistics.median(res["none"])
    cbase = statistics.median(cpus["none"])
    print(f"\n{'file source (blocking)':<24} {'frames/s':>9} {'vs none':>8} {'waited s':>9} {'CPU ms/fr':>10} "
          f"{'+CPU ms':>8} {'runs (frames/s)':>24}")
    for k in kinds:
        m, c = statistics.median(res[k]), statistics.median(cpus[k])
        runs = " ".join(f"{v:.1f}" for v in res[k])
        print(f"{k:<24} {m:>9.2f} {m / base:>8.3f} {statistics.median(waits[k]):>9.2f} {c:>10.1f} {c - cbase:>+8.1f} "
              f"{runs:>24}")
    print("(waited s: median time per run the pipeline thread spent blocked on full writer queues; the rest of\n"
          " any slowdown is the encoder threads' CPU use competing with inference on this machine)")
    if live_kinds:
        print(f"\n{'live source @' + format(a.live_fps, 'g') + ' fps':<24} {'frames/s':>9} {'vs none':>8} "
              f"{'p50 ms':>8} {'src drop':>9} {'writer drop':>12}")
        lbase = statistics.median(v[0] for v in live["none"])
        for k in live_kinds:
            fps = statistics.median(v[0] for v in live[k])
            p50 = statistics.median(v[1] for v in live[k])
            print(f"{k:<24} {fps:>9.2f} {fps / lbase:>8.3f} {p50:>8.1f} {sum(v[2] for v in live[k]):>9} "
                  f"{sum(v[3] for v in live[k]):>12}")
    print(f"\n{'encoder only (' + a.size + ')':<24} {'frames/s':>9}")
    for codec, fps in encoder_only(images, tmp):
        print(f"{codec:<24} {fps:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
