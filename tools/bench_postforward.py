"""Benchmark: HayCAM+'s post-forward time (map and boxes) now against the code of an earlier commit, one run.

    python -m tools.bench_postforward                    # against 5f1ac1b, the code when issue 16 was filed
    python -m tools.bench_postforward --against REV --rounds 8 --calls 40

``tools/bench_cam.py`` times today's box paths side by side, but they share helpers (normalisation, the PCA)
that have been made faster since, so its "full" row is no longer the code the issue measured. This tool takes
``core/`` of ``--against`` out of git (``git archive``, into a temporary folder) and times the same call,
``core.explain_features(logits, acts, "haycam+", (224, 224))`` on one ResNet18 batch (seed 0, batch 16, one
torch thread, one OpenCV thread), in a fresh process per variant; the variants alternate over ``--rounds`` rounds so they meet
the same background load. ``tools/bench_cam.py`` calls :func:`compare` for its own line against the old code.

Two clocks per call: wall time, and the process's CPU time (``time.process_time``: all its threads). On an
idle machine they agree for this single-threaded work; on a shared, loaded one the wall time also counts the
time the process waited for a core (a 4 ms call is preempted now and then, a 20 ms call nearly always), so
the CPU-time ratio is the one that holds under load. Each round's figure is the median over ``--calls``
calls; the table gives the median over rounds, the per-round range, and the ratios to the old code.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
ISSUE_16_BASE = "5f1ac1b"

# Runs inside each variant's process, with that variant's `core` first on sys.path.
SNIPPET = r"""
import statistics, sys, time, json, cv2, torch
torch.set_num_threads(1); cv2.setNumThreads(1); torch.set_flush_denormal(True); torch.manual_seed(0)
import core
from core.model import CamModel, build_torchvision
kwargs = json.loads(sys.argv[1]); calls = int(sys.argv[2]); batch = int(sys.argv[3])
model = CamModel(build_torchvision("resnet18", 2)).eval()
with torch.inference_mode():
    logits, acts = model(torch.randn(batch, 3, 224, 224))
f = lambda: core.explain_features(logits, acts, "haycam+", (224, 224), **kwargs)
for _ in range(3):
    f()
wall, cpu = [], []
for _ in range(calls):
    t, c = time.perf_counter(), time.process_time()
    f()
    cpu.append(time.process_time() - c); wall.append(time.perf_counter() - t)
print(json.dumps({"core": core.__file__, "ms_per_image": 1000 * statistics.median(wall) / batch,
                  "cpu_ms_per_image": 1000 * statistics.median(cpu) / batch}))
"""

OLD = ("old code: input-size maps, boxes on them", "old", {})
WORKER = ("now, the stream worker (grid boxes, no input-size maps)", "new", {"full_maps": False})
VARIANTS = (  # (label, which code, explain_features keyword arguments); the old code first, the worker last
    OLD,
    ("now, box_resolution='full' (the old path on today's helpers)", "new", {"box_resolution": "full"}),
    ("now, core.explain default (input-size maps, grid boxes)", "new", {}),
    WORKER,
)


@dataclass
class Comparison:
    """Per variant label: per-round median ms per image, by wall clock and by CPU time; where each code lives."""

    against: str
    rounds: int
    calls: int
    batch: int
    wall: dict[str, list[float]]
    cpu: dict[str, list[float]]
    where: dict[str, str]

    def ratio(self, label: str, clock: str = "wall") -> float:
        """How many times less per image than the old code (median over rounds)."""
        times = self.wall if clock == "wall" else self.cpu
        return statistics.median(times[OLD[0]]) / statistics.median(times[label])

    def table(self) -> str:
        """The Markdown table, its heading and the target line."""
        out = [f"HayCAM+ post-forward (map and boxes), ResNet18, batch {self.batch}, 224 px, one torch thread; "
               f"median of {self.rounds} alternating rounds x {self.calls} calls; old code = core/ at {self.against}",
               "",
               "| variant | wall ms / image | per-round range | x less (wall) | CPU ms / image | x less (CPU) |",
               "|---|---:|---:|---:|---:|---:|"]
        for label in self.wall:
            w, c = self.wall[label], self.cpu[label]
            out.append(f"| {label} | {statistics.median(w):.3f} | {min(w):.3f}–{max(w):.3f} | "
                       f"{self.ratio(label):.2f} | {statistics.median(c):.3f} | {self.ratio(label, 'cpu'):.2f} |")
        out.append(f"\ncode timed: {'; '.join(f'{k} {v}' for k, v in self.where.items())}")
        per_round = sorted(o / w for o, w in zip(self.wall[OLD[0]], self.wall[WORKER[0]]))
        out.append(f"\n(target, issue 16: the worker's post-forward time >= 4x lower than the old code: "
                   f"{self.ratio(WORKER[0]):.2f}x by wall clock, {self.ratio(WORKER[0], 'cpu'):.2f}x by CPU time; "
                   f"per-round wall ratios {per_round[0]:.2f}–{per_round[-1]:.2f})")
        return "\n".join(out)


def export_core(rev: str, dest: Path) -> None:
    """``core/`` as it was at ``rev`` -> ``dest/core`` (``git archive``; nothing else of the tree)."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "core"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")


def run_variant(path: Path, kwargs: dict, calls: int, batch: int) -> tuple[float, float, str]:
    """(wall, CPU) median ms per image of one variant in a fresh process whose ``core`` comes from ``path``."""
    env = dict(os.environ, PYTHONPATH=str(path), OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", SNIPPET, json.dumps(kwargs), str(calls), str(batch)],
                         cwd=str(path), env=env, check=True, capture_output=True, text=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    return float(res["ms_per_image"]), float(res["cpu_ms_per_image"]), res["core"]


def compare(against: str = ISSUE_16_BASE, rounds: int = 5, calls: int = 40, batch: int = 16,
            variants: tuple = VARIANTS, progress: bool = True) -> Comparison:
    """Time ``variants`` (the old code of ``against`` and today's), alternating fresh processes over ``rounds``.

    Raises:
        ValueError: when ``git archive`` cannot export ``core/`` at ``against`` (naming the revision).
    """
    with tempfile.TemporaryDirectory(prefix="bench_postforward_") as tmp:
        old = Path(tmp)
        try:
            export_core(against, old)
        except subprocess.CalledProcessError as exc:
            raise ValueError(f"--against {against!r}: git archive failed: "
                             f"{(exc.stderr or b'').decode(errors='replace').strip()}") from None
        paths = {"old": old, "new": ROOT}
        wall: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        cpu: dict[str, list[float]] = {label: [] for label, _, _ in variants}
        where: dict[str, str] = {}
        bar = tqdm(total=rounds * len(variants), desc="post-forward", unit="run", disable=not progress)
        for _ in range(rounds):
            for label, code, kwargs in variants:
                w, c, where[code] = run_variant(paths[code], kwargs, calls, batch)
                wall[label].append(w)
                cpu[label].append(c)
                bar.update()
        bar.close()
    return Comparison(against, rounds, calls, batch, wall, cpu, where)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(prog="python -m tools.bench_postforward", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", default=ISSUE_16_BASE, help=f"git revision of the old code (default {ISSUE_16_BASE})")
    ap.add_argument("--rounds", type=int, default=5, help="rounds; each runs every variant once (default 5)")
    ap.add_argument("--calls", type=int, default=40, help="timed calls per variant per round (default 40)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", default=None, help="also write the per-round figures as JSON to this file")
    args = ap.parse_args(argv)
    try:
        res = compare(args.against, args.rounds, args.calls, args.batch)
    except ValueError as exc:
        print(f"bench_postforward: error: {exc}", file=sys.stderr)
        return 2
    print("\n" + res.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump(vars(res), f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
