"""What tracking a batch in waves (one frame per source at a time) costs the local engine in faces mode.

``stream.tracked_faces`` tracks a batch holding several frames of one source in waves, so that what is
classified on a frame never depends on the batching (issue 15: the same people in both engines). With one
source and ``--batch-size 4`` that is up to four forwards per batch instead of one. This runs the local
engine on one generated 720p clip of ``--faces`` faces (the bundled test faces), faces mode, people on,
alternately with waves and with the whole batch as one wave, and prints frames/s (first to last result)
per run and the ratio of the medians. Compare only within one run on a shared machine:

    python tools/bench_waves.py [--faces 5] [--frames 60] [--repeats 3] [--backend onnxruntime]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402

import stream.tracked_faces as tracked  # noqa: E402
from stream.config import from_dict  # noqa: E402
from stream.pipeline import build_pipeline  # noqa: E402
from tools.face_clip import write_face_clip  # noqa: E402


def run(clip: Path, out: Path, waves: bool, args: argparse.Namespace) -> float:
    """Frames/s of one local faces-mode run (waves on or off)."""
    original = tracked.waves
    if not waves:
        tracked.waves = lambda frames: [list(frames)]
    try:
        cfg = from_dict({
            "sources": {"specs": [str(clip)]},
            "worker": {"device": "cpu", "mode": "faces", "batch_size": args.batch_size, "backend": args.backend,
                       "torch_threads": 1},
            "sinks": {"display": False, "events": str(out / f"{'waves' if waves else 'one'}.jsonl")},
            "run": {"progress": False},
        })
        pipe = build_pipeline(cfg)
        stamps: list[float] = []
        pipe.on_result = lambda result, latency: stamps.append(time.perf_counter())
        pipe.run()
    finally:
        tracked.waves = original
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--faces", type=int, default=5)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--backend", default="onnxruntime")
    args = ap.parse_args()
    face = cv2.imread(str(ROOT / "tests/data/astronaut_face.png"))
    masked = cv2.imread(str(ROOT / "core/assets/samples/astronaut_face_masked.png"))
    pool = [face, masked, cv2.flip(face, 1), cv2.flip(masked, 1)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        clip = out / "clip.mp4"
        write_face_clip(clip, [pool[i % 4] for i in range(args.faces)], size=(1280, 720), n_frames=args.frames)
        fps: dict[bool, list[float]] = {True: [], False: []}
        for _ in range(args.repeats):
            for waves in (True, False):
                fps[waves].append(run(clip, out, waves, args))
    print(f"{args.faces} faces, 1280x720, {args.frames} frames, batch {args.batch_size}, {args.backend}; "
          f"load average {os.getloadavg()[0]:.1f} at end")
    print(f"waves (default)      frames/s {[round(v, 1) for v in fps[True]]}")
    print(f"one wave per batch   frames/s {[round(v, 1) for v in fps[False]]}")
    print(f"ratio of medians (waves / one wave): {statistics.median(fps[True]) / statistics.median(fps[False]):.2f}")


if __name__ == "__main__":
    main()
