"""Screen face-detector settings on tracking-benchmark clips, before spending tracker runs on them.

    python -m tools.screen_detectors --bench out/trackbench_tune out/trackbench_tune2 \\
        --detectors retinaface,retinaface:input_size=800,retinaface-mask

For each clip set and detector setting (``name[:key=value,...]``, as in ``tools.detector_recall``): the share
of evaluated faces that boxes scoring at least each ``--scores`` value find (the benchmark's one-to-one
matching at ``--iou``, don't-care faces excepted), and the boxes per frame scoring at least ``--false-score``
that lie on no face, on every ``--every``-th frame (the detector's own schedule in faces mode). The detector
runs at a low threshold once per frame and every count is taken from that one output. Choose on the tune sets
(``--split trainval``), never on the test clips.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from core.detect import create_detector
from tools.detector_recall import parse_spec
from tools.trackbench.detscreen import ScreenCount
from tools.trackbench.mot import read_gt


def clip_frames(folder: Path, every: int):
    """(1-based index, BGR frame) of the clip's sampled frames (ValueError naming the file when unreadable)."""
    path = folder / "clip.mp4"
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"{path}: cannot be read as a video")
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            i += 1
            if (i - 1) % every == 0:
                yield i, frame
    finally:
        cap.release()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.screen_detectors", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", nargs="+", default=["out/trackbench_tune"], help="clip-set folders (make_trackbench)")
    ap.add_argument("--detectors", default="retinaface,retinaface:input_size=800",
                    help="name[:key=value,...] separated by ',' or ';' (e.g. retinaface,retinaface:input_size=800,nms_iou=0.3)")
    ap.add_argument("--scores", default="0.6,0.4", help="score thresholds the found faces are counted at")
    ap.add_argument("--false-score", type=float, default=0.4, help="boxes at least this count when on no face")
    ap.add_argument("--iou", type=float, default=0.3)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    try:
        scores = tuple(float(s) for s in args.scores.split(","))
    except ValueError:
        print(f"--scores must be numbers separated by ',', got {args.scores!r}", file=sys.stderr)
        return 2
    if args.every < 1:
        print(f"--every must be >= 1, got {args.every}", file=sys.stderr)
        return 2
    specs = _split_specs(args.detectors)
    low = min(scores + (args.false_score,))
    try:
        dets = {s: create_detector(name, **{"score_threshold": low, **opts}) for s in specs
                for name, opts in [parse_spec(s)]}
    except ValueError as exc:
        print(f"--detectors: {exc}", file=sys.stderr)
        return 2
    rows = []
    for bench in map(Path, args.bench):
        clips = sorted(p for p in bench.iterdir() if (p / "clip.mp4").exists()) if bench.is_dir() else []
        if not clips:
            print(f"--bench {bench}: no clips (make them with python -m tools.make_trackbench)", file=sys.stderr)
            return 2
        counts = {s: ScreenCount(scores, args.false_score) for s in specs}
        for clip in tqdm(clips, desc=bench.name, unit="clip"):
            try:
                gt = read_gt(clip)
                out: dict[str, dict[int, np.ndarray]] = {s: {} for s in specs}
                for i, frame in clip_frames(clip, args.every):
                    for s, d in dets.items():
                        out[s][i] = d.detect([frame])[0]
            except (ValueError, OSError) as exc:  # a malformed or missing ground-truth file, an unreadable video
                print(f"{clip}: {exc}", file=sys.stderr)
                return 2
            for s in specs:
                counts[s].add_clip(gt, out[s], args.iou)
        for s in specs:
            rows.append({"bench": str(bench), "detector": s, **counts[s].row()})
    _print(rows, scores)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


def _split_specs(text: str) -> list[str]:
    """``a,b:x=1,y=2,b:x=3`` -> ``["a", "b:x=1,y=2", "b:x=3"]``: a bare ``key=value`` part belongs to the spec
    before it; with a ``;`` anywhere, the specs are what ``;`` separates."""
    if ";" in text:  # tools.detector_recall's form: specs separated by ';'
        return [t.strip() for t in text.split(";") if t.strip()]
    specs: list[str] = []
    for part in filter(None, text.split(",")):
        key, eq, _ = part.partition("=")
        if eq and ":" not in key and specs and ":" in specs[-1]:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


def _print(rows: list[dict], scores: tuple[float, ...]) -> None:
    head = ["bench", "detector", "frames", "faces"] + [f"recall@{s:g}" for s in scores] + ["false/frame"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [Path(r["bench"]).name, r["detector"], str(r["frames"]), str(r["faces"])]
        cells += [f"{r[f'recall@{s:g}']:.3f}" for s in scores] + [f"{r['false_per_frame']:.3f}"]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
