"""Run several configs on the crowd benchmark (tools/make_crowdbench.py) and score faces, people and speed.

    python -m tools.make_crowdbench                            # once: out/crowdbench (test side)
    nice python -m tools.score_crowdbench --configs "default,full=configs/crowd_full.yaml,crowd"

Every clip is run by the CLI once per config, the configs one after the other on each clip (so a change
in the machine's load hits all of them alike)::

    python -m stream.cli.main run --mode faces --source <clip>/clip.mp4 --events E --json-summary S \\
        --no-display --no-progress [--config CONFIG] [--run-args ...]

``--configs`` lists ``NAME`` or ``NAME=CONFIG`` (a bundled name or a YAML path; ``default``: no
``--config``). Reported per config, pooled over the clips:

* **faces found**: the share of ground-truth face-frames (with_mask / without_mask faces at least half
  visible) covered by a box of the run (one-to-one per frame, IoU >= 0.3), by face size: the square root of
  the box area in the 640 px view the default detector sees (frame pixels x 640 / the frame's longer side);
* **label right**: of those, the share whose box is shown with the face's class;
* **unmasked caught**: without_mask people (ground-truth identities) whose track is decided
  ``without_mask`` on at least one frame where it covers them (untracked runs: the frame's label);
* **false tracks**: person ids whose boxes cover no annotated face (any class, any visibility, IoU >= 0.3)
  on at least half of their frames, of all person ids;
* **frames/s**: frames out / wall seconds of the pipeline (``--json-summary``), summed over the clips.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from core.track.tracker import iou_matrix
from tools.trackbench.events import read_events
from tools.trackbench.mot import read_gt
from tools.trackbench.scene import CLASSES
from tools.trackbench.score import match

ROOT = Path(__file__).resolve().parents[1]
IOU = 0.3
SIZES = (("< 16 px", 0.0, 16.0), ("16-32 px", 16.0, 32.0), (">= 32 px", 32.0, float("inf")))


def parse_configs(text: str) -> list[tuple[str, str | None]]:
    """``"default,full=a.yaml,crowd"`` -> [("default", None), ("full", "a.yaml"), ("crowd", "crowd")]."""
    out = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        name, _, cfg = item.partition("=")
        out.append((name, cfg or (None if name == "default" else name)))
    if not out:
        raise argparse.ArgumentTypeError("--configs: give at least one config")
    return out


def run_clip(video: Path, config: str | None, events: Path, summ: Path, extra: list[str]) -> dict:
    """Run maskstream faces mode on ``video``; returns its ``--json-summary``."""
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--mode", "faces", "--source", str(video),
           "--events", str(events), "--json-summary", str(summ), "--no-display", "--no-progress", *extra]
    if config:
        cmd += ["--config", config]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"maskstream run exited {proc.returncode} on {video} ({config}):\n{proc.stderr[-2000:]}")
    return json.loads(summ.read_text())


def score_clip(clip: Path, events: Path) -> dict:
    """Counts for one clip and one run (see the module docstring)."""
    gt = read_gt(clip)
    pred = read_events(events)
    scale = 640.0 / max(1, _frame_long_side(clip))
    total, hit, right = defaultdict(int), defaultdict(int), defaultdict(int)
    track_frames, track_hits = defaultdict(int), defaultdict(int)
    unmasked = {int(i) for i, lab, v in zip(gt.id, gt.label, gt.visibility) if lab == "without_mask" and v >= 0.5}
    caught: set[int] = set()
    for f in range(1, gt.n_frames + 1):
        g = np.flatnonzero(gt.frame == f)
        p = np.flatnonzero(pred.frame == f)
        iou = iou_matrix(gt.xyxy[g], pred.xyxy[p]) if len(g) and len(p) else np.zeros((len(g), len(p)))
        pairs = dict(match(iou, IOU))
        for j, pi in enumerate(p):  # false tracks: covering any annotated face, whatever its class or visibility
            pid = int(pred.person_id[pi])
            track_frames[pid] += 1
            track_hits[pid] += int(iou.shape[0] > 0 and iou[:, j].max() >= IOU)
        for r, gi in enumerate(g):
            if gt.label[gi] not in CLASSES or gt.visibility[gi] < 0.5:
                continue
            b = gt.xyxy[gi]
            side = float(np.sqrt(max(0.0, (b[2] - b[0]) * (b[3] - b[1])))) * scale
            size = next(n for n, lo, hi in SIZES if lo <= side < hi)
            for key in ("all", size, str(gt.label[gi])):
                total[key] += 1
            if r in pairs:
                pi = p[pairs[r]]
                shown = pred.person_label[pi] if pred.person_label[pi] not in (None, "undecided") else pred.label[pi]
                for key in ("all", size, str(gt.label[gi])):
                    hit[key] += 1
                    right[key] += int(shown == gt.label[gi])
                decided = pred.person_label[pi] if pred.tracked else pred.label[pi]
                if decided == "without_mask":
                    caught.add(int(gt.id[gi]))
    tracks = [pid for pid in track_frames if pid >= 0]
    false = sum(1 for pid in tracks if track_hits[pid] < 0.5 * track_frames[pid])
    return {"total": dict(total), "hit": dict(hit), "right": dict(right), "unmasked": len(unmasked),
            "caught": len(caught & unmasked), "tracks": len(tracks), "false_tracks": false}


def _frame_long_side(clip: Path) -> int:
    meta = json.loads((clip / "clip.json").read_text())
    return int(max(meta["size"]))


def pooled(rows: list[dict]) -> dict:
    out: dict = {"total": defaultdict(int), "hit": defaultdict(int), "right": defaultdict(int)}
    for k in ("unmasked", "caught", "tracks", "false_tracks", "frames", "wall_s"):
        out[k] = sum(r.get(k, 0) for r in rows)
    for r in rows:
        for part in ("total", "hit", "right"):
            for key, v in r[part].items():
                out[part][key] += v
    return out


def pct(n: int, d: int) -> str:
    return "-" if d == 0 else f"{100.0 * n / d:.1f}"


def table(results: dict[str, dict]) -> str:
    names = list(results)
    first = results[names[0]]
    cols = ["all"] + [n for n, _, _ in SIZES] + list(CLASSES)
    head = " | ".join(f"{c} (n={first['total'].get(c, 0)})" for c in cols)
    lines = [f"| config | found: {head} | label right | unmasked caught | false tracks / tracks | frames/s | x first |",
             "|---|" + "---:|" * (len(cols) + 5)]
    fps0 = first["frames"] / max(first["wall_s"], 1e-9)
    for name in names:
        s = results[name]
        fps = s["frames"] / max(s["wall_s"], 1e-9)
        found = " | ".join(pct(s["hit"].get(c, 0), s["total"].get(c, 0)) for c in cols)
        lines.append(f"| {name} | {found} | {pct(s['right'].get('all', 0), s['hit'].get('all', 0))}% | "
                     f"{s['caught']}/{s['unmasked']} | {s['false_tracks']}/{s['tracks']} | {fps:.2f} | {fps / fps0:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.score_crowdbench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clips", default="out/crowdbench", help="folder written by tools.make_crowdbench")
    ap.add_argument("--configs", type=parse_configs, default=parse_configs("default,crowd"),
                    help="comma-separated NAME or NAME=CONFIG (default: no --config)")
    ap.add_argument("--out", default="out/crowdbench_runs", help="events and summaries go here")
    ap.add_argument("--run-args", default="", help="extra arguments for every maskstream run")
    ap.add_argument("--json", default=None, help="write the pooled counts as JSON here")
    args = ap.parse_args(argv)
    clips = sorted(p.parent for p in Path(args.clips).glob("*/clip.mp4"))
    if not clips:
        print(f"score_crowdbench: error: {args.clips}: no */clip.mp4 (run tools.make_crowdbench first)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = shlex.split(args.run_args)
    rows: dict[str, list[dict]] = {name: [] for name, _ in args.configs}
    t0 = time.monotonic()
    for k, clip in enumerate(clips, 1):
        for name, cfg in args.configs:
            ev, summ = out / f"{clip.name}-{name}.jsonl", out / f"{clip.name}-{name}.summary.json"
            s = run_clip(clip / "clip.mp4", cfg, ev, summ, extra)
            r = score_clip(clip, ev)
            r.update(frames=s["frames_out"], wall_s=s["wall_s"])
            rows[name].append(r)
            print(f"[{k}/{len(clips)}] {clip.name} {name}: found {pct(r['hit'].get('all', 0), r['total'].get('all', 0))}%"
                  f", {s['fps']:.2f} frames/s ({time.monotonic() - t0:.0f} s)", flush=True)
    results = {name: pooled(rs) for name, rs in rows.items()}
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
