"""Benchmark: HayCAM+'s post-forward time (map and boxes) now against the code of an earlier commit, one run.

    python -m tools.bench_postforward                    # against 5f1ac1b, the code when issue 16 was filed
    python -m tools.bench_postforward --against REV --rounds 5 --calls 40

``tools/bench_cam.py`` times today's box paths side by side, but they share helpers (normalisation, the PCA)
that have been made faster since, so its "full" row is no longer the code the issue measured. This tool takes
``core/`` of ``--against`` out of git (``git archive``, into a temporary folder) and times the same call,
``core.explain_features(logits, acts, "haycam+", (224, 224))`` on one ResNet18 batch (seed 0, batch 16, one
torch thread), in a fresh process per variant; the variants alternate over ``--rounds`` rounds so they meet
the same background load. Prints the median ms per image of each variant and its ratio to the old code.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
ISSUE_16_BASE = "5f1ac1b"

# Runs inside each variant's process, with that variant's `core` first on sys.path.
SNIPPET = r"""
import statistics, sys, time, json, torch
torch.set_num_threads(1); torch.set_flush_denormal(True); torch.manual_seed(0)
import core
from core.model import CamModel, build_torchvision
kwargs = json.loads(sys.argv[1]); calls = int(sys.argv[2]); batch = int(sys.argv[3])
model = CamModel(build_torchvision("resnet18", 2)).eval()
with torch.inference_mode():
    logits, acts = model(torch.randn(batch, 3, 224, 224))
f = lambda: core.explain_features(logits, acts, "haycam+", (224, 224), **kwargs)
for _ in range(3):
    f()
times = []
for _ in range(calls):
    t = time.perf_counter(); f(); times.append(time.perf_counter() - t)
print(json.dumps({"core": core.__file__, "ms_per_image": 1000 * statistics.median(times) / batch}))
"""

VARIANTS = (  # (label, which code, explain_features keyword arguments)
    ("old code: input-size maps, boxes on them", "old", {}),
    ("now, box_resolution='full' (the old path on today's helpers)", "new", {"box_resolution": "full"}),
    ("now, core.explain default (input-size maps, grid boxes)", "new", {}),
    ("now, the stream worker (grid boxes, no input-size maps)", "new", {"full_maps": False}),
)


def export_core(rev: str, dest: Path) -> None:
    """``core/`` as it was at ``rev`` -> ``dest/core`` (``git archive``; nothing else of the tree)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "core"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def run_variant(path: Path, kwargs: dict, calls: int, batch: int) -> tuple[float, str]:
    """Median ms per image of one variant in a fresh process whose ``core`` comes from ``path``."""
    import json

    env = dict(os.environ, PYTHONPATH=str(path), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SNIPPET, json.dumps(kwargs), str(calls), str(batch)],
                         cwd=str(path), env=env, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["ms_per_image"]), res["core"]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(prog="python -m tools.bench_postforward", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", default=ISSUE_16_BASE, help=f"git revision of the old code (default {ISSUE_16_BASE})")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; each runs every variant once (default 5)")
    ap.add_argument("--calls", type=int, default=40, help="timed calls per variant per round (default 40)")
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_postforward_") as tmp:
        old = Path(tmp)
        try:
            export_core(args.against, old)
        except subprocess.CalledProcessError as exc:
            print(f"bench_postforward: error: --against {args.against!r}: git archive failed: "
                  f"{exc.stderr.decode(errors='replace').strip()}", file=sys.stderr)
            return 2
        paths = {"old": old, "new": ROOT}
        times: dict[str, list[float]] = {label: [] for label, _, _ in VARIANTS}
        where: dict[str, str] = {}
        bar = tqdm(total=args.rounds * len(VARIANTS), desc="post-forward", unit="run")
        for _ in range(args.rounds):
            for label, code, kwargs in VARIANTS:
                ms, where[code] = run_variant(paths[code], kwargs, args.calls, args.batch)
                times[label].append(ms)
                bar.update()
        bar.close()
    base = statistics.median(times[VARIANTS[0][0]])
    print(f"\nHayCAM+ post-forward (map and boxes), ResNet18, batch {args.batch}, 224 px, one torch thread; "
          f"median of {args.rounds} alternating rounds x {args.calls} calls; old code = core/ at {args.against}\n")
    print("| variant | ms / image | per-round range | x less than the old code |")
    print("|---|---:|---:|---:|")
    for label, _, _ in VARIANTS:
        m = statistics.median(times[label])
        print(f"| {label} | {m:.3f} | {min(times[label]):.3f}–{max(times[label]):.3f} | {base / m:.2f} |")
    print(f"\ncode timed: old {where['old']}, now {where['new']}")
    worker = statistics.median(times[VARIANTS[-1][0]])
    print(f"\n(target, issue 16: the worker's post-forward time >= 4x lower than the old code: {base / worker:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
