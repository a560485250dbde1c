"""Write the tracking benchmark: seeded clips from facemask_voc photos with exact MOT ground truth.

    python -m tools.make_trackbench                                   # 12 clips from the TEST side -> out/trackbench
    python -m tools.make_trackbench --split trainval --out out/trackbench_tune   # for choosing thresholds

The reported benchmark uses only the ``test`` side of ``core.data.splits.voc_split`` (photos never used
for training or for choosing anything). Anything tuned on clips (tracker / vote thresholds) must use
``--split trainval`` (the train and val sides), never the test clips. Recipes and the photo rule:
``tools/trackbench/recipes.py``; file layout: ``tools/trackbench/mot.py``. The videos are written
outside git (``out/`` is ignored); the same data, seed and size always give the same ground truth.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import cv2

from core.data.splits import voc_split
from core.data.voc import read_duplicate_groups, read_voc
from tools.trackbench.mot import write_gt
from tools.trackbench.recipes import UNANNOTATED_FILE, build_specs, load_unannotated
from tools.trackbench.scene import ClipSpec, render_clip

SPLITS = {"test": ("test",), "trainval": ("train", "val")}


def split_photos(root: Path, split: str, prog: str) -> list | None:
    """The annotated photos of one side of ``voc_split`` (``split`` a key of :data:`SPLITS`), or None after
    printing ``prog: error: ROOT: ...`` when the folder cannot be read."""
    try:
        images = read_voc(root)
        groups = read_duplicate_groups(root)
    except Exception as exc:  # noqa: BLE001 - one line naming the folder
        print(f"{prog}: error: {root}: {exc}", file=sys.stderr)
        return None
    parts = voc_split(images, groups)
    return [im for side in SPLITS[split] for im in parts[side]]


def write_clips(specs: list[ClipSpec], root: Path, out: Path, describe: Callable[[ClipSpec, dict], str],
                manifest: dict) -> int:
    """Render every clip under ``out`` (printing ``describe(spec, entry)`` per clip), then ``manifest.json``
    (``manifest`` plus the clips' entries) -> the number of clips."""
    out.mkdir(parents=True, exist_ok=True)
    entries, t0 = [], time.monotonic()
    for k, spec in enumerate(specs, 1):
        e = write_clip(spec, root, out)
        entries.append(e)
        print(f"[{k}/{len(specs)}] {spec.name}: {describe(spec, e)}  ({time.monotonic() - t0:.0f} s)", flush=True)
    (out / "manifest.json").write_text(json.dumps({**manifest, "clips": entries}, indent=1) + "\n", encoding="utf-8")
    return len(entries)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WxH, e.g. 960x540") from None
    if w < 64 or h < 64 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError(f"--size {text!r}: width and height must be even and >= 64")
    return w, h


def write_clip(spec: ClipSpec, root: Path, out: Path) -> dict:
    """Render ``spec`` into ``out/<name>/`` (clip.mp4 + ground truth); returns its manifest entry."""
    folder = out / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    cache: dict[str, object] = {}

    def load(f: str):
        if f not in cache:
            img = cv2.imread(str(root / f), cv2.IMREAD_COLOR)
            if img is None:
                raise ValueError(f"{root / f}: cannot be read as an image")
            cache[f] = img
        return cache[f]

    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, spec.size)
    if not writer.isOpened():
        raise RuntimeError(f"{video}: OpenCV cannot open an mp4v writer")
    rows = []
    try:
        for frame, r in render_clip(spec, load):
            writer.write(frame)
            rows.extend(r)
    finally:
        writer.release()
    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    cap.release()
    if n != spec.n_frames:
        raise RuntimeError(f"{video}: wrote {spec.n_frames} frames but reads back {n}")
    write_gt(folder, spec, rows)
    ids = {r.id for r in rows}
    return {"name": spec.name, "recipe": spec.recipe, "fps": spec.fps, "frames": spec.n_frames,
            "photos": [s.photo for s in spec.shots], "ids": len(ids), "gt_rows": len(rows)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.make_trackbench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/facemask_voc", help="facemask_voc folder (annotations.json)")
    ap.add_argument("--split", choices=list(SPLITS), default="test",
                    help="photos from the test side (the reported benchmark) or train+val (for tuning)")
    ap.add_argument("--out", default="out/trackbench", help="output folder (one sub-folder per clip)")
    ap.add_argument("--clips", type=int, default=12, help="number of clips (recipes cycle)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    ap.add_argument("--size", type=parse_size, default=(960, 540), help="frame size WxH")
    ap.add_argument("--unannotated", default=str(UNANNOTATED_FILE),
                    help="faces the annotation leaves out, made don't-care regions (tools/audit_unannotated.py)")
    ap.add_argument("--annotated-only", action="store_true",
                    help="ignore --unannotated (the ground truth before 2026-11-30: every unannotated face a false one)")
    args = ap.parse_args(argv)
    root = Path(args.data)
    photos = split_photos(root, args.split, "make_trackbench")
    if photos is None:
        return 2
    try:
        extra = {} if args.annotated_only else load_unannotated(args.unannotated)
        specs = build_specs(photos, args.clips, args.seed, args.size, extra)
    except ValueError as exc:
        print(f"make_trackbench: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    n = write_clips(specs, root, out,
                    lambda spec, e: f"{e['frames']} frames at {spec.fps:g} fps, {e['ids']} ids, {', '.join(e['photos'])}",
                    {"data": str(root), "split": args.split, "seed": args.seed, "size": list(args.size),
                     "unannotated": None if args.annotated_only else args.unannotated})
    print(f"wrote {n} clips to {out} (photos from the {args.split} side of voc_split)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
