"""Find faces the facemask_voc annotation leaves out, on the photos the tracking benchmark uses.

    python -m tools.audit_unannotated --out out/audit        # candidates.json + numbered contact sheets

Both shipped face detectors (``retinaface`` and ``retinaface-mask``) run on every photo of the benchmark's
clip sets (test: 12 clips, seed 0; tune: 12 clips seed 0 and 24 clips seed 1, train+val side) at two input
sizes (640 and 1280 px); a detection of score >= ``--score`` that overlaps no annotated face (IoU < 0.3)
is a candidate. Candidates of one photo that overlap each other (IoU >= 0.3) are one candidate, its box the
mean of theirs. The sheets show each candidate's crop (its box in yellow, the annotated faces in green, one box of context per side) under its
number: a person decides by eye which are real faces, and those go into
``tools/trackbench/unannotated.json``, which the clip generator turns into don't-care regions (see
``tools/trackbench/recipes.py``). Nothing here is scored; the tool only lists what to look at.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

from core.detect import create_detector
from tools.make_trackbench import split_photos
from tools.trackbench.linker import iou_matrix
from tools.trackbench.recipes import build_specs

TILE = 300  # px per crop on the sheets
SETS = (("test", 12, 0), ("trainval", 12, 0), ("trainval", 24, 1))


def bench_photos(root: Path) -> dict[str, object]:
    """file -> VocImage for every photo a benchmark clip set shows (shots only, not splice donors)."""
    out = {}
    for split, n, seed in SETS:
        photos = split_photos(root, split, "audit_unannotated")
        if photos is None:
            raise SystemExit(2)
        by_file = {p.file: p for p in photos}
        for spec in build_specs(photos, n, seed):
            for shot in spec.shots:
                out[shot.photo] = by_file[shot.photo]
    return dict(sorted(out.items()))


def merge(boxes: np.ndarray, thr: float = 0.3) -> list[np.ndarray]:
    """Group (N, 5) boxes that overlap (IoU >= thr, single link) -> the mean box (4,) and best score of each."""
    groups: list[list[int]] = []
    iou = iou_matrix(boxes[:, :4], boxes[:, :4])
    seen = set()
    for i in range(len(boxes)):
        if i in seen:
            continue
        stack, g = [i], []
        while stack:
            k = stack.pop()
            if k in seen:
                continue
            seen.add(k)
            g.append(k)
            stack.extend(int(j) for j in np.flatnonzero(iou[k] >= thr) if j not in seen)
        groups.append(g)
    return [np.concatenate([boxes[g, :4].mean(0), [boxes[g, 4].max()], [len(g)]]) for g in groups]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.audit_unannotated", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/facemask_voc")
    ap.add_argument("--out", default="out/audit")
    ap.add_argument("--score", type=float, default=0.5)
    args = ap.parse_args(argv)
    root, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = bench_photos(root)
    dets = [create_detector(n, input_size=s, score_threshold=args.score)
            for n in ("retinaface", "retinaface-mask") for s in (640, 1280)]
    cands, crops = [], []
    for k, (f, im) in enumerate(photos.items(), 1):
        img = cv2.imread(str(root / f))
        found = np.concatenate([d.detect([img])[0] for d in dets])
        ann = np.array([b.xyxy for b in im.boxes], np.float64)
        if len(found) and len(ann):
            found = found[iou_matrix(found[:, :4], ann).max(1) < 0.3]
        marked = img.copy()
        for q in ann:  # annotated faces in green: a candidate on one of them is a misplaced box, not a face
            cv2.rectangle(marked, (int(q[0]), int(q[1])), (int(q[2]), int(q[3])), (0, 255, 0), 1)
        for c in merge(found) if len(found) else []:
            x1, y1, x2, y2 = c[:4]
            cands.append({"n": len(cands), "photo": f, "box": [round(float(v), 1) for v in c[:4]],
                          "score": round(float(c[4]), 3), "votes": int(c[5])})
            w, h = x2 - x1, y2 - y1
            a, b = int(max(0, x1 - 1.0 * w)), int(max(0, y1 - 1.0 * h))
            shown = marked.copy()
            cv2.rectangle(shown, (int(x1), int(y1)), (int(x2), int(y2)), (0, 255, 255), 1)
            crop = shown[b:int(y2 + 1.0 * h), a:int(x2 + 1.0 * w)]
            tile = cv2.resize(crop, (TILE, TILE), interpolation=cv2.INTER_CUBIC)
            cv2.putText(tile, str(len(cands) - 1), (4, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 0, 255), 2)
            crops.append(tile)
        print(f"[{k}/{len(photos)}] {f}: {len(found)} unmatched detections", flush=True)
    (out / "candidates.json").write_text(json.dumps(cands, indent=1) + "\n", encoding="utf-8")
    for s in range(0, len(crops), 12):
        part = crops[s:s + 12] + [np.zeros((TILE, TILE, 3), np.uint8)] * (-len(crops[s:s + 12]) % 4)
        rows = [np.hstack(part[r:r + 4]) for r in range(0, len(part), 4)]
        cv2.imwrite(str(out / f"sheet_{s // 12:02d}.png"), np.vstack(rows))
    print(f"{len(cands)} candidates on {len(photos)} photos -> {out}/candidates.json, sheet_*.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
