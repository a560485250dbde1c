"""Write the crowd benchmark: clips of crowded photos (many small faces) with exact MOT ground truth.

    python -m tools.make_crowdbench                                   # 6 clips from the TEST side -> out/crowdbench
    python -m tools.make_crowdbench --split trainval --out out/crowdbench_tune   # for choosing the schedule

A camera overlooking a crowd: each clip films one facemask_voc photo with at least ``--min-faces`` two-class
faces (those with the most faces under 16 px first), the window 90% of the widest one that fits, drifting slowly across the photo (10% of its width over
the clip, alternating direction), 25 fps, ``--seconds`` long, rendered at ``--size`` (960x540: a ~400 px
photo is enlarged ~2.7x, so a face of 8 px in the photo is ~21 px in the frame, ~14 px at the cheap
detector's 640 px input). Photos come from one side of ``core.data.splits.voc_split``: ``test`` for the
reported table, ``trainval`` for any choice. Rendering, ground truth and file layout are the tracking
benchmark's (``tools/trackbench``; ``tools/make_trackbench.py``). Scored by ``tools/score_crowdbench.py``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from core.data.voc import VocImage
from tools.make_trackbench import SPLITS, parse_size, split_photos, write_clips
from tools.trackbench.scene import CLASSES, ClipSpec, Face, Shot


def two_class(im: VocImage) -> int:
    """Faces labelled with_mask or without_mask in the photo."""
    return sum(b.label in CLASSES for b in im.boxes)


def small_faces(im: VocImage, px: float = 16.0) -> int:
    """Two-class faces under ``px`` (sqrt of the box area, photo pixels)."""
    return sum(b.label in CLASSES and ((b.xyxy[2] - b.xyxy[0]) * (b.xyxy[3] - b.xyxy[1])) ** 0.5 < px for b in im.boxes)


def build_specs(
    images: list[VocImage], n_clips: int, seed: int, size: tuple[int, int], min_faces: int, seconds: float
) -> list[ClipSpec]:
    """Clip specs (deterministic for the same photos and arguments): the photos with the most faces under
    16 px among those with ``min_faces`` two-class faces.

    Raises:
        ValueError: fewer than ``n_clips`` photos with ``min_faces`` two-class faces.
    """
    cands = sorted((im for im in images if two_class(im) >= min_faces), key=lambda im: (-small_faces(im), im.file))
    if len(cands) < n_clips:
        raise ValueError(f"only {len(cands)} photos have >= {min_faces} two-class faces; asked for {n_clips} clips")
    rng = np.random.default_rng(seed)
    aspect = size[0] / size[1]
    specs = []
    for i, im in enumerate(cands[:n_clips]):
        pw, ph = float(im.width), float(im.height)
        ww = 0.9 * min(pw, ph * aspect)
        wh = ww / aspect
        left, right = ww / 2, pw - ww / 2
        span = min(0.1 * pw, right - left)
        x0 = float(rng.uniform(left, max(left, right - span)))
        xs = (x0, x0 + span) if i % 2 == 0 else (x0 + span, x0)
        cy = float(np.clip(np.median([(b.xyxy[1] + b.xyxy[3]) / 2 for b in im.boxes]), wh / 2, ph - wh / 2))
        keys = ((0.0, round(xs[0], 2), round(cy, 2), round(ww, 2)), (seconds, round(xs[1], 2), round(cy, 2), round(ww, 2)))
        faces = tuple(Face(tuple(float(v) for v in b.xyxy), b.label) for b in im.boxes)
        specs.append(ClipSpec(f"{i:02d}_crowd", 25.0, size, (Shot(im.file, faces, seconds, keys),), "crowd",
                              {"faces": two_class(im), "small_faces": small_faces(im)}))
    return specs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.make_crowdbench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/facemask_voc", help="facemask_voc folder (annotations.json)")
    ap.add_argument("--split", choices=list(SPLITS), default="test",
                    help="photos from the test side (the reported table) or train+val (for choices)")
    ap.add_argument("--out", default="out/crowdbench", help="output folder (one sub-folder per clip)")
    ap.add_argument("--clips", type=int, default=6, help="number of clips (photos with the most small faces)")
    ap.add_argument("--min-faces", type=int, default=8, help="two-class faces a photo needs")
    ap.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    ap.add_argument("--seed", type=int, default=0, help="seed of the drift")
    ap.add_argument("--size", type=parse_size, default=(960, 540), help="frame size WxH")
    args = ap.parse_args(argv)
    root = Path(args.data)
    photos = split_photos(root, args.split, "make_crowdbench")
    if photos is None:
        return 2
    try:
        specs = build_specs(photos, args.clips, args.seed, args.size, args.min_faces, args.seconds)
    except ValueError as exc:
        print(f"make_crowdbench: error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    n = write_clips(specs, root, out, lambda spec, e: f"{e['frames']} frames, {e['ids']} faces, {e['photos'][0]}",
                    {"data": str(root), "split": args.split, "seed": args.seed, "size": list(args.size),
                     "min_faces": args.min_faces})
    print(f"wrote {n} clips to {out} (photos from the {args.split} side of voc_split)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
