"""End-to-end crowd check: ``maskstream run --mode faces`` on photos of facemask_voc, scored against its boxes.

Exactly what a user gets: each config is run by the CLI on a folder of the chosen side's photos (symbolic
links, nothing copied), with ``--events``; the frame and detection events carry each photo's file name, so
every face box and label is matched back to that photo's annotated faces (IoU >= 0.3, one to one, by score).

Reported per config: recall of the two-class faces (with_mask, without_mask) by face size (sqrt of box
area: < 16, 16-32, >= 32 px) and class, label accuracy on the found faces, unmasked people caught (found and
labelled without_mask), false detections per photo (detections matching no annotated face of any label;
``mask_weared_incorrect`` faces count as faces here but not in recall), and the run's wall time per photo,
with the ratio to the first config (all configs run one after another in the same invocation). The time is
the run summary's ``wall_s`` (from the first frame to the end: detection, classification and HayCAM+ maps of
every face, drawing and the events sink; process start-up excluded), divided by the photos.

    nice python -m tools.crowd_eval --split test --configs default,crowd --out out/crowd_eval

Choose on ``--split trainval``; ``test`` is for the final report only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from core.detect.recall import match_pairs  # noqa: E402
from tools.detector_recall import DEFAULT_DATA, SPLITS, split_files  # noqa: E402

TWO_CLASS = ("with_mask", "without_mask")
SIZES = (("<16px", 0.0, 16.0), ("16-32px", 16.0, 32.0), (">=32px", 32.0, math.inf))
IOU = 0.3


def face_size(xyxy) -> float:
    """sqrt of the box area in pixels."""
    return float(math.sqrt(max(0.0, xyxy[2] - xyxy[0]) * max(0.0, xyxy[3] - xyxy[1])))


def size_name(xyxy) -> str:
    s = face_size(xyxy)
    return next(n for n, lo, hi in SIZES if lo <= s < hi)


def photo_folder(data: Path, split: str, folder: Path, limit: int | None) -> list[dict]:
    """Link the split's photos into ``folder`` (flat, by file name); return their annotations."""
    keep = split_files(data, split)
    anns = [a for a in json.loads((data / "annotations.json").read_text()) if keep is None or a["file"] in keep]
    anns = anns[: limit or None]
    folder.mkdir(parents=True, exist_ok=True)
    names = set()
    for a in anns:
        name = Path(a["file"]).name
        if name in names:
            raise SystemExit(f"two photos named {name} in {data}: the flat folder needs unique names")
        names.add(name)
        link = folder / name
        if not link.exists():
            os.symlink((data / a["file"]).resolve(), link)
    return anns


def run_config(config: str, folder: Path, out: Path, extra: list[str]) -> tuple[Path, float, dict]:
    """``maskstream run --config CONFIG --mode faces`` on the folder; (events path, wall seconds, summary)."""
    tag = Path(config).stem  # a name (crowd) or a YAML path
    ev, summ = out / f"events-{tag}.jsonl", out / f"summary-{tag}.json"
    cmd = [sys.executable, "-m", "stream.cli.main", "run", "--mode", "faces", "--source", str(folder)]
    cmd += ["--events", str(ev), "--no-display", "--no-progress", "--json-summary", str(summ)]
    cmd += ([] if config == "default" else ["--config", config]) + extra
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"config {config}: maskstream run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return ev, wall, json.loads(summ.read_text())


def read_events(path: Path) -> dict[str, list[dict]]:
    """Photo name -> its detection events (every photo with a frame event gets a key)."""
    by_name: dict[str, list[dict]] = {}
    for line in path.read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "frame":
            by_name.setdefault(e["name"], [])
        elif e["type"] == "detection":
            by_name.setdefault(e["name"], []).append(e)
    return by_name


def match_photo(ann: dict, dets: list[dict]) -> np.ndarray:
    """Index of the annotated box of photo ``ann`` that each of its detection events matched (IoU >= ``IOU``,
    one to one, by score; any label), or -1: a (len(dets),) int array."""
    gt = np.array([b["xyxy"] for b in ann["boxes"]], dtype=np.float64).reshape(-1, 4)
    d = np.array([e["box"] + [e["score"]] for e in dets], dtype=np.float64).reshape(-1, 5)
    return match_pairs(gt, d, IOU)


def score(anns: list[dict], found: dict[str, list[dict]]) -> dict:
    """Counts for one config (see the module docstring)."""
    total, hit, right = defaultdict(int), defaultdict(int), defaultdict(int)
    false = 0
    missing = [a["file"] for a in anns if Path(a["file"]).name not in found]
    for a in anns:
        dets = found.get(Path(a["file"]).name, [])
        owner = match_photo(a, dets)
        false += int((owner < 0).sum())
        label_of = {int(g): dets[i]["label"] for i, g in enumerate(owner) if g >= 0}
        for g, b in enumerate(a["boxes"]):
            if b["label"] not in TWO_CLASS:
                continue
            for key in ("all", b["label"], size_name(b["xyxy"]), f"{b['label']} {size_name(b['xyxy'])}"):
                total[key] += 1
                if g in label_of:
                    hit[key] += 1
                    right[key] += int(label_of[g] == b["label"])
    return {"total": total, "hit": hit, "right": right, "false": false, "photos": len(anns), "missing": missing}


def pct(n: int, d: int) -> str:
    return "-" if d == 0 else f"{100 * n / d:.1f}"


def table(rows: list[tuple[str, dict, float]]) -> str:
    cols = ["all"] + [n for n, _, _ in SIZES] + list(TWO_CLASS)
    first = rows[0][1]
    head = " | ".join(f"found {c} (n={first['total'][c]})" for c in cols)
    out = [
        f"| config | {head} | label right on found | unmasked caught | false dets/photo | s/photo | x first |",
        "|---|" + "---:|" * (len(cols) + 5),
    ]
    base = rows[0][2] / max(rows[0][1]["photos"], 1)
    for name, s, wall in rows:
        t, h, r = s["total"], s["hit"], s["right"]
        per = wall / max(s["photos"], 1)
        cells = [name] + [pct(h[c], t[c]) for c in cols]
        cells += [f"{pct(r['all'], h['all'])} ({r['all']}/{h['all']})"]
        cells += [f"{r['without_mask']}/{t['without_mask']}", f"{s['false'] / max(s['photos'], 1):.2f}"]
        cells += [f"{per:.3f}", f"{per / base:.2f}"]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def size_by_class(name: str, s: dict) -> str:
    parts = []
    for c in TWO_CLASS:
        for n, _, _ in SIZES:
            k = f"{c} {n}"
            parts.append(f"{k} {pct(s['hit'][k], s['total'][k])}% of {s['total'][k]}")
    return f"{name}: " + "; ".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="facemask_voc folder (annotations.json + images/)")
    p.add_argument("--split", choices=SPLITS, default="trainval", help="side of THE split (report on test only)")
    p.add_argument("--configs", default="default,crowd", help="comma-separated --config names (default: none)")
    p.add_argument("--limit", type=int, default=None, help="first N photos of the side only")
    p.add_argument("--out", type=Path, default=Path("out/crowd_eval"), help="folder for events, summaries, table")
    p.add_argument("--device", default="cpu", help="worker.device for every run (default cpu)")
    args = p.parse_args(argv)
    if not (args.data / "annotations.json").is_file():
        raise SystemExit(f"{args.data / 'annotations.json'} not found (pass --data)")
    args.out.mkdir(parents=True, exist_ok=True)
    anns = photo_folder(args.data, args.split, args.out / f"photos-{args.split}", args.limit)
    n_faces = sum(b["label"] in TWO_CLASS for a in anns for b in a["boxes"])
    print(f"{len(anns)} photos ({args.split}), {n_faces} two-class faces", flush=True)
    rows = []
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        ev, wall, summary = run_config(config, args.out / f"photos-{args.split}", args.out, ["--device", args.device])
        s = score(anns, read_events(ev))
        if s["missing"]:
            raise SystemExit(f"config {config}: no frame event for {len(s['missing'])} photos, e.g. {s['missing'][0]}")
        rows.append((config, s, float(summary["wall_s"])))  # the pipeline's own time: no start-up, no imports
        print(f"  {config}: {wall:.1f} s with start-up, {summary['wall_s']:.1f} s in the pipeline", flush=True)
    text = "\n".join([table(rows), ""] + [size_by_class(n, s) for n, s, _ in rows])
    print("\n" + text)
    (args.out / f"crowd_eval-{args.split}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
