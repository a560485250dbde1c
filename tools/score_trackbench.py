"""Score ``maskstream run --mode faces`` on the tracking benchmark (clips from tools/make_trackbench.py).

    python -m tools.make_trackbench                                  # once: out/trackbench (test side)
    python -m tools.score_trackbench --run                           # run maskstream on every clip, then score
    python -m tools.score_trackbench --run --run-args "--backend onnxruntime" --json out/trackbench_score.json
    python -m tools.score_trackbench                                 # score existing events again

For each clip it runs (``--run``; skipped when the events file exists, unless ``--rerun``)::

    python -m stream.cli.main run --mode faces --source <clip>/clip.mp4 --events <events-dir>/<clip>.jsonl \\
        --no-display --no-progress [--run-args ...]

and scores two rows from the same events:

* ``tracked``: the ``person_id`` / ``person_label`` that maskstream wrote on its detection events (only
  when the events carry them: issue 13's tracker);
* ``baseline``: per-frame detections linked by IoU (``tools/trackbench/linker.py``), each track's label
  the running majority of its per-frame labels: what the every-frame path gives without a tracker.

Rules and metric definitions: ``tools/trackbench/score.py``. Prints a table per clip and the pooled
rows against the issue's targets, and writes everything as JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import time
from pathlib import Path

from tools.trackbench.breakdown import Breakdown, breakdown_clip
from tools.trackbench.breakdown import table as breakdown_table
from tools.trackbench.events import read_events
from tools.trackbench.linker import link_by_iou
from tools.trackbench.mot import read_gt
from tools.trackbench.score import ScoreOptions, pool, score_clip, summary

TARGETS = {"IDF1": (">=", 0.90), "person_accuracy": (">=", 0.99), "flips_per_track": ("<=", 0.05),
           "count_error": ("<=", 0.05)}
ROOT = Path(__file__).resolve().parents[1]


def run_clip(video: Path, events: Path, extra: list[str], log: Path) -> float:
    """Run maskstream faces mode on ``video`` into ``events`` (written atomically); returns seconds taken."""
    tmp = events.with_suffix(".part")
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--mode", "faces", "--source", str(video),
           "--events", str(tmp), "--no-display", "--no-progress", *extra]
    t0 = time.monotonic()
    with open(log, "w", encoding="utf-8") as fh:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=3600).returncode
    if rc != 0:
        raise RuntimeError(f"maskstream run exited {rc} on {video} (log: {log})")
    tmp.replace(events)
    return time.monotonic() - t0


def _fmt(v, nd=3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:.{nd}f}"
    return str(v)


COLUMNS = [("IDF1", "IDF1"), ("HOTA", "HOTA"), ("MOTA", "MOTA"), ("IDSW", "IDsw"), ("recall", "rec"),
           ("person_accuracy", "person acc"), ("frame_accuracy", "frame acc"), ("segments", "segs"),
           ("undecided", "undec"), ("missed", "missed"), ("flips_per_track", "flips/trk"),
           ("decision_s_median", "decide s (p50)"), ("decision_s_p90", "p90"), ("gt_people", "people"),
           ("pred_people", "pred"), ("count_error", "count err"),
           ("appeared_events", "appeared ev")]


def table(rows: list[tuple[str, dict]]) -> str:
    """A Markdown table of summary dicts."""
    head = "| row | " + " | ".join(c for _, c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, s in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(s[k]) for k, _ in COLUMNS) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.score_trackbench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", default="out/trackbench", help="benchmark folder (tools/make_trackbench.py)")
    ap.add_argument("--events-dir", default=None, help="events files <clip>.jsonl (default: BENCH/events)")
    ap.add_argument("--run", action="store_true", help="run maskstream on clips that have no events file yet")
    ap.add_argument("--rerun", action="store_true", help="with --run: run every clip again")
    ap.add_argument("--run-args", default="", help="extra options for maskstream run, e.g. \"--backend onnxruntime\"")
    ap.add_argument("--pred-margin", type=float, default=0.0,
                    help="per-side margin of the event boxes over the face box: 0 (faces mode reports the face "
                         "box); 0.15 for events written when it reported the crop (worker.face_margin)")
    ap.add_argument("--iou", type=float, default=0.5, help="IoU for a match")
    ap.add_argument("--json", default=None, help="write per-clip and pooled results here")
    ap.add_argument("--breakdown", action="store_true",
                    help="also say where the tracked row loses: missed and false boxes, split and false people, "
                         "wrong and undecided decisions (tools/trackbench/breakdown.py)")
    args = ap.parse_args(argv)
    bench = Path(args.bench)
    clips = sorted(p.parent for p in bench.glob("*/seqinfo.ini"))
    if not clips:
        print(f"score_trackbench: error: {bench}: no clips (make them with python -m tools.make_trackbench)",
              file=sys.stderr)
        return 2
    ev_dir = Path(args.events_dir) if args.events_dir else bench / "events"
    ev_dir.mkdir(parents=True, exist_ok=True)
    opts = ScoreOptions(iou=args.iou)
    extra = shlex.split(args.run_args)
    per: dict[str, list] = {"tracked": [], "baseline": []}
    losses: list[Breakdown] = []
    t0 = time.monotonic()
    for k, clip in enumerate(clips, 1):
        events = ev_dir / f"{clip.name}.jsonl"
        if args.run and (args.rerun or not events.exists()):
            print(f"[{k}/{len(clips)}] {clip.name}: running maskstream ...", flush=True)
            took = run_clip(clip / "clip.mp4", events, extra, ev_dir / f"{clip.name}.log")
            gt = read_gt(clip)
            print(f"    {gt.n_frames} frames in {took:.1f} s ({gt.n_frames / took:.1f} frames/s)", flush=True)
        if not events.exists():
            print(f"score_trackbench: error: {events}: no events (use --run)", file=sys.stderr)
            return 2
        gt = read_gt(clip)
        pred = read_events(events, margin=args.pred_margin)
        if pred.tracked:
            per["tracked"].append(score_clip(gt, pred, opts))
            if args.breakdown:
                losses.append(breakdown_clip(gt, pred, opts))
        per["baseline"].append(score_clip(gt, link_by_iou(pred), opts))
        print(f"[{k}/{len(clips)}] {clip.name}: scored ({time.monotonic() - t0:.0f} s)", flush=True)
    names = {"tracked": "tracked (maskstream person_id)", "baseline": "baseline: per-frame detections linked by IoU"}
    result = {"bench": str(bench), "options": vars(opts), "rows": {}}
    pooled = []
    for key, scores in per.items():
        if not scores:
            continue
        s = summary(pool(scores))
        pooled.append((names[key], s))
        result["rows"][key] = {"name": names[key], "pooled": s,
                               "clips": {c.name: summary(c) for c in scores}}
        print(f"\n{names[key]}, per clip:")
        print(table([(c.name, summary(c)) for c in scores]))
    print(f"\npooled over {len(clips)} clips:")
    print(table(pooled))
    print("\ntargets: " + ", ".join(f"{k} {op} {v}" for k, (op, v) in TARGETS.items())
          + ", person_accuracy > frame_accuracy")
    for name, s in pooled:
        checks = [f"{k} {'ok' if (s[k] >= v if op == '>=' else s[k] <= v) else 'NOT met'}"
                  for k, (op, v) in TARGETS.items()]
        checks.append("person>frame " + ("ok" if s["person_accuracy"] > s["frame_accuracy"] else "NOT met"))
        print(f"  {name}: " + ", ".join(checks))
    if losses:
        total = Breakdown("all")
        for b in losses:
            total.add(b)
        print("\nwhere the tracked row loses (tools/trackbench/breakdown.py):")
        print(breakdown_table(losses + [total]))
        for seg in total.segments:
            if seg["outcome"] != "correct":
                print(f"  {seg}")
        result["breakdown"] = {"counts": total.counts, "clips": {b.name: b.counts for b in losses},
                               "segments": total.segments}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1, default=float) + "\n", encoding="utf-8")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
