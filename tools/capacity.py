"""Per-frame costs of the ray engine's stages, measured here, and what they mean for a site.

Measures, on this machine (medians over ``--reps``):

* decode: ms per frame reading a 1080p and a 720p file with OpenCV (the camera actor's capture);
* camera preprocess: ms per frame to shrink it to the model input (``stages.model_inputs``);
* detect: ms per 720p frame for the default face detector (faces mode; camera actor);
* classify-and-explain: ms per image for the replica's work (``stages.InferenceCore.run``: forward,
  HayCAM+ map, boxes) at batch 1, 8, 16 and 32 on ``--device``;
* transfer: bytes per frame on each hop, and with ``--ray`` the measured cost of one Ray call
  carrying a model input (camera -> replica) and one carrying a whole frame (camera -> driver).

and prints a capacity table for cameras at ``--fps`` (10) and 1080p: cameras per CPU core and per
``--node-cores``-core node for capture, cameras per inference replica on ``--device``, and the
nodes 100 and 1,000 cameras need. ``--json FILE`` keeps the numbers. The GPU side runs on a GPU
machine with ``python tools/capacity.py --device cuda`` (tools/gpu_check.sh calls it).

    python tools/capacity.py [--device cpu|cuda] [--reps 30] [--batches 1,8,16,32] [--ray] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
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

from stream.config import WorkerConfig  # noqa: E402
from stream.pipeline import SAMPLE_CLIP  # noqa: E402

SIZES = {"1080p": (1920, 1080), "720p": (1280, 720)}


def sample_frames(size: tuple[int, int], n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(SAMPLE_CLIP))
    out = []
    while len(out) < n:
        ok, im = cap.read()
        if not ok:
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            continue
        out.append(cv2.resize(im, size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    return out


def timed(fn, reps: int, warm: int = 2) -> float:
    """Median seconds of ``fn()`` over ``reps`` calls after ``warm`` calls."""
    for _ in range(warm):
        fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def decode_ms(folder: Path, name: str, size: tuple[int, int], n: int) -> float:
    p = folder / f"{name}.mp4"
    wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
    for im in sample_frames(size, n):
        wr.write(im)
    wr.release()
    best = []
    for _ in range(3):
        cap = cv2.VideoCapture(str(p))
        t, k = time.perf_counter(), 0
        while cap.read()[0]:
            k += 1
        best.append((time.perf_counter() - t) / max(1, k) * 1000)
        cap.release()
    return statistics.median(best)


def detect_ms(frame: np.ndarray, reps: int) -> float | None:
    try:
        from core.detect import create_detector

        det = create_detector(None)
    except Exception as exc:  # noqa: BLE001 - the detector's wheel may be absent
        print(f"detect: n/a ({exc})")
        return None
    return timed(lambda: det.detect([frame]), reps) * 1000


def infer_ms(device: str, batches: list[int], reps: int, checkpoint: str | None) -> tuple[dict, object]:
    from stream.engines.stages import InferenceCore, model_inputs
    from stream.processor import create_backend

    cfg = WorkerConfig(device=device, checkpoint=checkpoint)
    core = InferenceCore(create_backend(cfg), cfg)
    frames = sample_frames(SIZES["720p"], max(batches))
    x = model_inputs(frames, core.info)
    out = {}
    for b in batches:
        xb = x[:b]

        def run():
            core.run([xb])
            if device.startswith("cuda"):
                torch.cuda.synchronize()

        out[b] = timed(run, max(3, reps // max(1, b // 4))) * 1000 / b
    return out, core


def ray_transfer_ms(model_input: np.ndarray, frame: np.ndarray, reps: int) -> dict:
    from stream.config import Config
    from stream.engines.ray_engine import connect, import_ray

    connect(Config(), 1)  # before ray is imported: a loopback-only local instance
    ray = import_ray()
    try:
        @ray.remote(num_cpus=0)
        class Echo:
            def size(self, x) -> int:
                return int(x.nbytes)

            def frame(self, x):
                return x

        e = Echo.remote()
        ray.get(e.size.remote(model_input))
        to_replica = timed(lambda: ray.get(e.size.remote(model_input)), reps) * 1000
        back = timed(lambda: ray.get(e.frame.remote(frame)), reps) * 1000 / 2  # there and back: halve
        return {"input_call_ms": to_replica, "frame_hop_ms": back}
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu | cuda (the replica's device)")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--fps", type=float, default=10.0, help="frames per second per camera")
    ap.add_argument("--node-cores", type=int, default=16, help="cores of a camera node in the table")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--batches", default="1,8,16,32", help="replica batch sizes to time")
    ap.add_argument("--ray", action="store_true", help="also measure Ray calls on a local instance")
    ap.add_argument("--json", default=None, help="write the numbers here")
    args = ap.parse_args()
    torch.set_num_threads(1)  # per core: the table scales by cores
    print(f"machine: {os.cpu_count()} CPUs, torch threads 1, device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f} (shared machine: costs are upper bounds)")
    r: dict = {"device": args.device, "cpus": os.cpu_count(), "fps": args.fps}
    with tempfile.TemporaryDirectory() as tmp:
        for name, size in SIZES.items():
            r[f"decode_{name}_ms"] = decode_ms(Path(tmp), name, size, 40)
    batches = [int(b) for b in args.batches.split(",")]
    per_img, core = infer_ms(args.device, batches, args.reps, args.checkpoint)
    r["infer_ms_per_image"] = per_img
    from stream.engines.stages import model_inputs

    for name, size in SIZES.items():
        fr = sample_frames(size, 1)[0]
        r[f"pre_{name}_ms"] = timed(lambda fr=fr: model_inputs([fr], core.info), args.reps) * 1000
    fr720 = sample_frames(SIZES["720p"], 1)[0]
    r["detect_720p_ms"] = detect_ms(fr720, max(5, args.reps // 3))
    s = core.info.input_size
    fr1080 = sample_frames(SIZES["1080p"], 1)[0]
    x = model_inputs([fr1080], core.info)
    r["bytes"] = {"model_input": int(x.nbytes), "result_map": s * s, "frame_1080p": int(fr1080.nbytes)}
    if args.ray:
        r.update(ray_transfer_ms(x, fr1080, args.reps))

    # ---- the table (1080p, args.fps per camera)
    cam_ms = r["decode_1080p_ms"] + r["pre_1080p_ms"] + r.get("frame_hop_ms", 0.0)
    per_core = 1000.0 / (args.fps * cam_ms)
    per_node = math.floor(per_core * args.node_cores)
    best_b = min(per_img, key=per_img.get)
    img_s = 1000.0 / per_img[best_b]
    per_replica = img_s / args.fps  # frame mode: one image per frame
    r["table"] = {"camera_ms_per_frame": cam_ms, "cameras_per_core": per_core, "cameras_per_node": per_node,
                  "replica_best_batch": best_b, "replica_img_s": img_s, "cameras_per_replica": per_replica}
    print(f"\nper-frame costs ({args.device} replica; 1 thread):")
    print(f"  decode       1080p {r['decode_1080p_ms']:.2f} ms   720p {r['decode_720p_ms']:.2f} ms (OpenCV, mp4v)")
    print(f"  preprocess   1080p {r['pre_1080p_ms']:.2f} ms   720p {r['pre_720p_ms']:.2f} ms (shrink to {s}x{s} uint8)")
    d = r["detect_720p_ms"]
    print(f"  detect       720p {d:.1f} ms (faces mode, default detector)" if d else "  detect       n/a")
    print("  classify+explain ms/image by batch: " + ", ".join(f"{b}: {v:.2f}" for b, v in per_img.items()))
    print(f"  transfer     model input {r['bytes']['model_input'] / 1e3:.0f} kB, map {s * s / 1e3:.0f} kB, "
          f"1080p frame {r['bytes']['frame_1080p'] / 1e6:.1f} MB"
          + (f"; Ray call with the input {r['input_call_ms']:.2f} ms, frame hop {r['frame_hop_ms']:.2f} ms"
             if args.ray else ""))
    print(f"\ncapacity at 1080p, {args.fps:g} fps per camera (frame mode):")
    print(f"  camera side  {cam_ms:.1f} ms/frame -> {per_core:.1f} cameras per core, {per_node} per "
          f"{args.node_cores}-core node")
    print(f"  replica      {img_s:.0f} images/s at batch {best_b} -> {per_replica:.1f} cameras per replica "
          f"({args.device}{', 1 core' if args.device == 'cpu' else ''})")
    for n in (100, 1000):
        print(f"  {n:5d} cameras: {math.ceil(n / max(per_node, 1))} camera nodes + "
              f"{math.ceil(n / max(per_replica, 1e-9))} replicas")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(r, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
