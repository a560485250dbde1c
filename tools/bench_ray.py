"""Local engine against the ray engine on this machine: the same four 720p files, one run.

Writes ``--sources`` clips (the bundled sample resized to ``--size``, each from another offset),
runs them through ``maskstream run``'s local engine, then through the ray engine (a local Ray
instance on 127.0.0.1, one inference replica with all the machine's cores, one camera actor per
file), and prints frames/s for each, the overhead ratio (ray time / local time, goal <= 1.3) and
the batch sizes the shared inference replica reached.

Rates are counted from the first to the last result (steady state); the start-up (Ray, the
replica's model, the camera actors) is printed apart. On a shared machine, compare only within
one run.

    python tools/bench_ray.py [--frames 60] [--size 1280x720] [--sources 4] [--checkpoint PATH]
        [--group-size 1] [--batch-size 4] [--max-batch 16] [--video] [--mode frame|faces] [--no-people]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

from stream.config import Config, from_dict  # noqa: E402
from stream.pipeline import SAMPLE_CLIP, build_pipeline  # noqa: E402


def make_clips(folder: Path, n_sources: int, frames: int, size: tuple[int, int]) -> list[str]:
    """``n_sources`` clips of ``frames`` frames at ``size`` (W, H) from the sample clip, each from another offset."""
    cap = cv2.VideoCapture(str(SAMPLE_CLIP))
    src = []
    while True:
        ok, im = cap.read()
        if not ok:
            break
        src.append(cv2.resize(im, size, interpolation=cv2.INTER_LINEAR))
    cap.release()
    if not src:
        raise SystemExit(f"cannot read {SAMPLE_CLIP}")
    paths = []
    for k in range(n_sources):
        p = folder / f"cam{k}.mp4"
        wr = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, size)
        off = k * len(src) // max(1, n_sources)
        for i in range(frames):
            wr.write(src[(off + i) % len(src)])
        wr.release()
        paths.append(str(p))
    return paths


def config(specs: list[str], out: Path, args: argparse.Namespace, engine: str) -> Config:
    return from_dict({
        "sources": {"specs": specs},
        "worker": {"device": "cpu", "batch_size": args.batch_size, "checkpoint": args.checkpoint, "mode": args.mode},
        "people": {"enabled": not args.no_people},
        "sinks": {"display": False, "events": str(out / f"{engine}.jsonl"),
                  "output": str(out / f"{engine}.avi") if args.video else None},
        "run": {"progress": False, "engine": engine},
        "ray": {"group_size": args.group_size, "replicas": 1, "replica_cpus": float(os.cpu_count() or 1),
                "camera_cpus": 0.5, "max_batch": args.max_batch},
    })


def person_events(path: Path) -> dict[str, int]:
    """Person events of an events file by kind."""
    import json

    out: dict[str, int] = {}
    for line in path.open():
        e = json.loads(line)
        if e.get("type") == "person":
            out[e["event"]] = out.get(e["event"], 0) + 1
    return dict(sorted(out.items()))


class Clock:
    """First and last result times, via the pipeline's on_result hook."""

    def __init__(self) -> None:
        self.first = self.last = None
        self.n = 0

    def __call__(self, result, latency) -> None:  # noqa: ARG002
        now = time.perf_counter()
        self.first = self.first or now
        self.last = now
        self.n += 1

    def fps(self) -> float:
        return (self.n - 1) / (self.last - self.first) if self.n > 1 and self.last > self.first else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60, help="frames per file")
    ap.add_argument("--size", default="1280x720", help="WxH of the clips")
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--checkpoint", default=None, help="model (default: the shipped one)")
    ap.add_argument("--group-size", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=4, help="frames per camera request / local batch")
    ap.add_argument("--max-batch", type=int, default=16, help="most images per replica forward")
    ap.add_argument("--video", action="store_true", help="also write the annotated videos")
    ap.add_argument("--mode", choices=("frame", "faces"), default="frame")
    ap.add_argument("--no-people", action="store_true", help="people tracking off in both engines")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        specs = make_clips(out, args.sources, args.frames, (w, h))
        total = args.sources * args.frames
        print(f"{args.sources} files of {args.frames} frames at {w}x{h}, {args.mode} mode, people tracking "
              f"{'off' if args.no_people else 'on'}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")

        t0 = time.perf_counter()
        local = build_pipeline(config(specs, out, args, "local"))
        lc = Clock()
        local.on_result = lc
        s_local = local.run()
        t_local = time.perf_counter() - t0
        assert lc.n == total == s_local.frames_in, (lc.n, total, s_local.frames_in)

        from stream.engines.ray_engine import build_ray_pipeline, connect, import_ray, start_replicas

        cfg = config(specs, out, args, "ray")
        t0 = time.perf_counter()
        connect(cfg, n_cameras=len(specs))  # before ray is imported: a loopback-only local instance
        ray = import_ray()
        t_init = time.perf_counter() - t0
        try:
            replicas = start_replicas(ray, cfg)
            ray.get(replicas[0].info.remote())
            t_rep = time.perf_counter() - t0 - t_init
            t1 = time.perf_counter()
            pipe = build_ray_pipeline(cfg, replicas=replicas)
            rc = Clock()
            pipe.on_result = rc
            s_ray = pipe.run()
            t_ray = time.perf_counter() - t1
            sizes = pipe.collector.batch_sizes()
            stats = ray.get(replicas[0].stats.remote())
        finally:
            ray.shutdown()
        assert rc.n == total == s_ray.frames_in, (rc.n, total, s_ray.frames_in)
        people = {e: person_events(out / f"{e}.jsonl") for e in ("local", "ray")}

    print(f"{'engine':8} {'frames':>6} {'steady fps':>10} {'wall s':>7}  notes")
    print(f"{'local':8} {lc.n:6d} {lc.fps():10.2f} {t_local:7.1f}  one process, batch {args.batch_size}")
    print(f"{'ray':8} {rc.n:6d} {rc.fps():10.2f} {t_ray:7.1f}  {len(pipe.groups)} camera actors, 1 replica; "
          f"+ ray.init {t_init:.1f} s, replica start {t_rep:.1f} s")
    n = sum(sizes.values())
    mean = sum(k * v for k, v in sizes.items()) / n if n else 0
    print(f"overhead ratio (local steady fps / ray steady fps): {lc.fps() / max(rc.fps(), 1e-9):.2f} "
          f"(goal <= 1.3); wall ratio incl. camera start-up {t_ray / t_local:.2f}")
    print(f"replica batches (images per forward: count): {sizes}; mean {mean:.1f}; "
          f"requests per forward: {dict(sorted(stats['requests'].items()))}")
    print(f"person events (kind: count): local {people['local']}, ray {people['ray']}"
          f"{'' if people['local'] == people['ray'] else '  DIFFERENT'}")
    print(f"load average {os.getloadavg()[0]:.1f} at end (the machine is shared: compare ratios, not rates)")


if __name__ == "__main__":
    main()
