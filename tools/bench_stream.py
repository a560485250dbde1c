"""End-to-end stream benchmark: FPS and latency per mode, batch size and device, plus the bare forward.

For each (device, mode, batch size):

* ``fwd img/s``: the bare model forward on (B, 3, S, S) random input (the ceiling).
* ``proc FPS``: the worker's processor alone on in-memory frames (preprocess + forward + map + boxes).
* ``file FPS``: the whole pipeline from a video file source (no frame dropped), events sink on,
  video sink on with ``--video`` (display off), counted from first to last rendered frame.
* ``live p50/p95 ms`` and ``drop %``: the pipeline fed by a live-like paced source at ``--live-fps``
  (drop-oldest buffer of 1): end-to-end latency from capture to rendered, and frames the
  pipeline could not keep up with.

The clip is the bundled sample resized to ``--size`` (720p by default). Ratios in the last
column are file FPS over the bare forward of the same run. Timings on a shared CPU vary:
run with ``nice`` and compare only within one run.

    python tools/bench_stream.py [--size 1280x720] [--frames 120] [--batch-sizes 1,4,8]
        [--modes frame,faces] [--devices cpu,cuda] [--checkpoint PATH] [--video] [--live-seconds 6]
    python tools/bench_stream.py --crowd 1,5,20   # faces mode, people path vs every-frame path (tools/bench_people.py)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.backends import TorchBackend  # noqa: E402
from stream.config import ThresholdConfig, WorkerConfig, from_dict  # noqa: E402
from stream.frames import Frame  # noqa: E402
from stream.overlay import build_annotators  # noqa: E402
from stream.pipeline import SAMPLE_CLIP, Pipeline  # noqa: E402
from stream.processor import Processor  # noqa: E402
from stream.sinks import EventsSink, VideoSink  # noqa: E402
from tools.paced_source import PacedSource, load_frames  # noqa: E402


def calibrate_bn(model, meta, images: list[np.ndarray], steps: int = 4) -> None:
    """Give a random model realistic activation scales: BatchNorm running stats from real frames.

    A fresh torchvision model in eval mode has activations around 1e-8; CPU math on such
    (denormal) floats is many times slower than on a trained network's, which would make
    every timing here meaningless.
    """
    from core.preprocess import images_to_input

    model.train()
    with torch.no_grad():
        for k in range(steps):
            model(images_to_input(images[k * 4 : (k + 1) * 4] or images[:4], meta))
    model.eval()


def get_backend(checkpoint: str | None, device: str, images: list[np.ndarray]):
    from core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    if checkpoint or DEFAULT_CHECKPOINT.is_file():
        ck = load_checkpoint(checkpoint)
        model, meta, note = ck.model, ck.meta, str(ck.path)
    else:  # same architecture and cost as the shipped model
        from core.model import CamModel, ModelMeta, build_torchvision

        torch.manual_seed(0)
        meta = ModelMeta("mobilenet_v2", ("with_mask", "without_mask"), 224)
        model, note = (
            CamModel(build_torchvision("mobilenet_v2", 2), meta),
            "random mobilenet_v2, BN calibrated (no shipped checkpoint)",
        )
        calibrate_bn(model, meta, images)
    dev = torch.device(device)
    return TorchBackend(model, meta, dev, dev.type == "cuda"), note


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def in_thread(fn, *args):
    """Run ``fn`` in a fresh thread, like the pipeline's worker (on an oversubscribed CPU the
    main thread's OpenMP team can be many times slower than a worker thread's)."""
    import threading

    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args)))
    t.start()
    t.join()
    return out[0]


def bench_forward(backend, bs: int, reps: int = 5) -> float:
    s = backend.meta.input_size
    x = torch.randn(bs, 3, s, s, device=backend.device, dtype=backend.dtype)
    for _ in range(2):
        backend.forward(x)
    times = []
    for _ in range(reps):
        sync(backend.device)
        t = time.perf_counter()
        backend.forward(x)
        sync(backend.device)
        times.append(time.perf_counter() - t)
    return bs / statistics.median(times)


def bench_processor(proc: Processor, images: list[np.ndarray], bs: int, reps: int = 4) -> float:
    frames = [Frame("b", i, images[i % len(images)], time.monotonic()) for i in range(bs)]
    proc.process(frames)
    times = []
    for _ in range(reps):
        sync(proc.backend.device)
        t = time.perf_counter()
        proc.process(frames)
        sync(proc.backend.device)
        times.append(time.perf_counter() - t)
    return bs / statistics.median(times)


def run_pipeline(proc: Processor, sources, bs: int, sinks) -> tuple[float, float, float, int, int]:
    """(fps first->last rendered, latency p50 ms, p95 ms, frames out, dropped)."""
    stamps: list[float] = []
    pipe = Pipeline(
        sources, proc.process, sinks=sinks, batch_size=bs, batch_timeout_s=0.02, class_names=proc.class_names
    )
    pipe.annotators = build_annotators(from_dict({}).overlay, pipe.summary.monitor)
    pipe.on_result = lambda r, lat: stamps.append(time.monotonic())
    s = pipe.run()
    fps = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else float("nan")
    return fps, s.latency_ms(50), s.latency_ms(95), s.frames_out, s.frames_dropped


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="1280x720")
    ap.add_argument("--frames", type=int, default=120, help="frames per file run")
    ap.add_argument("--batch-sizes", default="1,4,8")
    ap.add_argument("--modes", default="frame,faces")
    ap.add_argument("--devices", default="cpu" + (",cuda" if torch.cuda.is_available() else ""))
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--method", default="haycam+")
    ap.add_argument("--detector", default=None)
    ap.add_argument("--video", action="store_true", help="also write the annotated video (mp4v) in file runs")
    ap.add_argument("--live-fps", type=float, default=25.0)
    ap.add_argument("--live-seconds", type=float, default=6.0, help="0: skip the live latency runs")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--crowd", default=None, help="faces mode with people vs every frame: face counts, e.g. 1,5,20")
    ap.add_argument("--crowd-frames", type=int, default=100)
    ap.add_argument("--crowd-backends", default="torch,onnxruntime")
    ap.add_argument("--files", type=int, default=1, help="file sources read at once in the file runs (same clip)")
    ap.add_argument("--json", default=None, help="also write the rows as JSON here")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    if a.crowd:  # tools/bench_people.py: real faces pasted on a 720p background, moving
        from tools.bench_people import print_table, run_crowd

        w, h = (int(v) for v in a.size.lower().split("x"))
        print(f"# crowd: {w}x{h}, {a.crowd_frames} frames at 25 fps, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads, CPU cores {__import__('os').cpu_count()}")
        rows = run_crowd([int(v) for v in a.crowd.split(",")], a.crowd_frames, a.crowd_backends.split(","), (w, h))
        print()
        print_table(rows)
        return 0
    w, h = (int(v) for v in a.size.lower().split("x"))
    images = load_frames(SAMPLE_CLIP, (w, h), limit=min(a.frames, 200))
    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    clip = tmp / "clip.mp4"
    wr = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (w, h))
    for i in range(a.frames):
        wr.write(images[i % len(images)])
    wr.release()
    from stream.sources import SourceOptions, open_source

    print(
        f"# bench_stream: {w}x{h}, {a.frames} frames/file run, method {a.method}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, CPU cores {__import__('os').cpu_count()}, {a.files} file source(s) at once"
    )
    rows = []
    for device in a.devices.split(","):
        backend, note = get_backend(a.checkpoint, device, images)
        print(f"# device {device}: model {note}, input {backend.meta.input_size}px, dtype {backend.dtype}")
        for mode in a.modes.split(","):
            detector = None
            if mode == "faces":
                try:
                    from stream.pipeline import create_detector

                    detector = create_detector(a.detector)
                except Exception as exc:  # noqa: BLE001 - report and go on
                    print(f"# faces mode skipped: {exc}")
                    continue
            for bs in (int(v) for v in a.batch_sizes.split(",")):
                cfg = WorkerConfig(
                    method=a.method, mode=mode, batch_size=bs, batch_timeout_ms=20, threshold=ThresholdConfig()
                )
                proc = Processor(backend, cfg, detector)
                fwd = in_thread(bench_forward, backend, bs)
                pfps = in_thread(bench_processor, proc, images, bs)
                sinks = [EventsSink(tmp / "ev.jsonl")]
                if a.video:
                    ids = [f"file{k}" for k in range(a.files)]
                    sinks.append(VideoSink(tmp / "out.mp4", ids, {k: 25.0 for k in ids}))
                srcs = [open_source(str(clip), source_id=f"file{k}", options=SourceOptions(file_queue=16))
                        for k in range(a.files)]
                ffps, _, _, nout, _ = run_pipeline(proc, srcs, bs, sinks)
                lp50 = lp95 = drop = float("nan")
                if a.live_seconds > 0:
                    live = PacedSource(images, a.live_fps, "live", buffer=1, duration_s=a.live_seconds)
                    _, lp50, lp95, lout, ldrop = run_pipeline(proc, [live], bs, [])
                    drop = 100.0 * ldrop / max(1, live.stats.frames_read)
                rows.append((device, mode, bs, fwd, pfps, ffps, nout, lp50, lp95, drop, ffps / fwd))
                print(f"  done {device} {mode} bs={bs}", flush=True)
    head = (
        "device",
        "mode",
        "batch",
        "fwd img/s",
        "proc FPS",
        "file FPS",
        "frames",
        "live p50 ms",
        "live p95 ms",
        "drop %",
        "file/fwd",
    )
    print()
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for r in rows:
        print(
            f"{r[0]} | {r[1]} | {r[2]} | {r[3]:.1f} | {r[4]:.1f} | {r[5]:.1f} | {r[6]} | {r[7]:.0f} | {r[8]:.0f} | "
            f"{r[9]:.0f} | {r[10]:.2f}"
        )
    if a.json:
        import json

        mem = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
        with open(a.json, "w") as f:
            json.dump({"size": a.size, "frames": a.frames, "files": a.files, "method": a.method,
                       "cuda_max_allocated_mb": mem, "rows": [dict(zip(head, r)) for r in rows]}, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
