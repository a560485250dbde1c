"""Paired label comparison of crowd_eval runs: label errors on the SAME annotated faces (issue 18; docs/CROWD.md).

``tools/crowd_eval.py`` scores each config on the faces it found, so two configs' label accuracies are over
different faces (a preset that finds more small faces is judged on harder ones). This reads the events files of
one crowd_eval invocation, matches every config's detections to the annotated two-class faces as crowd_eval does
(IoU >= 0.3, one to one, by score), and counts label errors of every config on
- the faces that BOTH ``--base`` and ``--other`` found, and
- the faces only ``--other`` found (``--base`` missed them),
with the errors split by face size (< 16 / 16-32 / >= 32 px, the annotated box).

    python -m tools.crowd_paired --split test --base out/t/events-default.jsonl --other out/t/events-crowd.jsonl \\
        --also out/t/events-crowd_before.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tools.crowd_eval import SIZES, TWO_CLASS, match_photo, read_events, size_name  # noqa: E402
from tools.detector_recall import DEFAULT_DATA, SPLITS, split_files  # noqa: E402


def labels_of_found(anns: list[dict], events: Path) -> dict[tuple[str, int], str]:
    """(photo file, index of the annotated box) -> the label the run gave it, for every two-class face it found."""
    found = read_events(events)
    out = {}
    for a in anns:
        dets = found.get(Path(a["file"]).name, [])
        for i, g in enumerate(match_photo(a, dets)):
            if g >= 0 and a["boxes"][g]["label"] in TWO_CLASS:
                out[(a["file"], int(g))] = dets[i]["label"]
    return out


def errors(labels: dict, keys: list, truth: dict, size: dict) -> str:
    """'wrong/n (a/b/c by size)' of ``labels`` over ``keys``."""
    wrong = [k for k in keys if labels[k] != truth[k]]
    per = "/".join(str(sum(size[k] == n for k in wrong)) for n, _, _ in SIZES)
    return f"{len(wrong)}/{len(keys)} ({per})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="facemask_voc folder (annotations.json + images/)")
    p.add_argument("--split", choices=SPLITS, default="test", help="side of THE split the events were run on")
    p.add_argument("--base", type=Path, required=True, help="events of the reference config (e.g. the default)")
    p.add_argument("--other", type=Path, required=True, help="events of the config compared with it (e.g. crowd)")
    p.add_argument("--also", type=Path, nargs="*", default=[], help="more events files labelled on the same faces")
    args = p.parse_args(argv)
    for ev in (args.base, args.other, *args.also):
        if not ev.is_file():
            p.error(f"{ev}: no such events file")
    if not (args.data / "annotations.json").is_file():
        p.error(f"{args.data / 'annotations.json'} not found (pass --data)")
    keep = split_files(args.data, args.split)
    anns = [a for a in json.loads((args.data / "annotations.json").read_text()) if keep is None or a["file"] in keep]
    truth = {(a["file"], g): b["label"] for a in anns for g, b in enumerate(a["boxes"])}
    size = {(a["file"], g): size_name(b["xyxy"]) for a in anns for g, b in enumerate(a["boxes"])}
    runs = {ev: labels_of_found(anns, ev) for ev in (args.base, args.other, *args.also)}
    base, other = runs[args.base], runs[args.other]
    both = sorted(set(base) & set(other))
    only = sorted(set(other) - set(base))
    print(f"faces found by both {args.base.name} and {args.other.name}: {len(both)}; by {args.other.name} only: "
          f"{len(only)}; by {args.base.name} only: {len(set(base) - set(other))}")
    print("\n| config | wrong on faces both found (< 16 / 16-32 / >= 32 px) | wrong on faces only the other found |")
    print("|---|---:|---:|")
    for ev, lab in runs.items():
        has_only = all(k in lab for k in only)
        print(f"| {ev.stem} | {errors(lab, both, truth, size) if all(k in lab for k in both) else '-'} | "
              f"{errors(lab, only, truth, size) if has_only else '-'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
