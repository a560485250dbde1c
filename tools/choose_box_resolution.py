"""Choose the grid boxes are cut at (``core.grid_boxes``) on the val split, then show the test side.

    python -m tools.choose_box_resolution --data ../shared/data/facemask_voc [--factors 2,4,8,16,full]

Maps are computed once per split (the shipped checkpoint unless ``--checkpoint``). For every box
resolution and method, the box threshold is fitted on the val crops (as ``maskstream eval
--calibrate`` does) and its val IoU is printed; the chosen factor is the smallest whose val IoU
is within ``--tolerance`` of the ``full`` path (boxes from input-size maps) for every method.
Then the test IoU of each method with its own val-fitted threshold, full vs every factor, and
whether the fitted threshold moved (then the checkpoint's stored thresholds need refitting).
Writes ``choose_box_resolution.json`` and ``.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from core.cams import METHODS
from core.checkpoint import load_checkpoint
from core.evaluation.eval import compute_maps, load_splits, make_crops
from core.grid_boxes import check_box_resolution
from core.localization import box_scores, calibrate_threshold, predicted_boxes, threshold_candidates


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print Markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--factors", default="2,4,8,16,full")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--tolerance", type=float, default=0.005, help="allowed val IoU loss against 'full' (the issue's 0.005)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("out/choose_box_resolution"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    factors = [check_box_resolution(f.strip()) for f in args.factors.split(",") if f.strip()]
    if "full" not in factors:
        factors.append("full")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    ckpt = load_checkpoint(args.checkpoint)
    size = ckpt.meta.input_size
    test_images, val_images = load_splits(args.data, "test", args.seed)
    val = make_crops(args.data, val_images, args.seed, size)
    test = make_crops(args.data, test_images, args.seed, size)
    vm = compute_maps(ckpt, val, methods, desc="val maps").maps
    tm = compute_maps(ckpt, test, methods, desc="test maps").maps
    cands = threshold_candidates()
    res: dict = {"n_val": len(val), "n_test": len(test), "methods": methods, "rows": []}
    for f in factors:
        for m in methods:
            cal = calibrate_threshold(vm[m], val.boxes, cands, (size, size), box_resolution=f)
            pred = predicted_boxes(tm[m], cal.threshold, (size, size), box_resolution=f)
            test_iou = float(box_scores(pred, test.boxes)[0].mean())
            res["rows"].append({"factor": f, "method": m, "threshold": [cal.threshold.mode, cal.threshold.value],
                                "val_iou": cal.mean_iou, "test_iou": test_iou})
            print(f"{f!s:>5} {m:10s} thr {cal.threshold.mode} {cal.threshold.value:.2f} val {cal.mean_iou:.4f} "
                  f"test {test_iou:.4f}", flush=True)
    by = {(r["factor"], r["method"]): r for r in res["rows"]}
    ok = [f for f in factors if f != "full" and all(
        by[(f, m)]["val_iou"] >= by[("full", m)]["val_iou"] - args.tolerance for m in methods)]
    res["chosen"] = min(ok) if ok else "full"
    lines = [f"val {len(val)} crops, test {len(test)} crops; chosen on val (tolerance {args.tolerance}): "
             f"{res['chosen']}", "",
             "| method | " + " | ".join(f"{f} val / test IoU (threshold)" for f in factors) + " |",
             "|---|" + "---|" * len(factors)]
    for m in methods:
        cells = [f"{by[(f, m)]['val_iou']:.4f} / {by[(f, m)]['test_iou']:.4f} ({by[(f, m)]['threshold'][1]:.2f})"
                 for f in factors]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    c = res["chosen"]
    if c != "full":
        diffs = {m: by[(c, m)]["test_iou"] - by[("full", m)]["test_iou"] for m in methods}
        moved = [m for m in methods if by[(c, m)]["threshold"] != by[("full", m)]["threshold"]]
        res["test_diff"], res["threshold_moved"] = diffs, moved
        lines += ["", f"test IoU, factor {c} minus full: " + ", ".join(f"{m} {d:+.4f}" for m, d in diffs.items()),
                  f"max |difference| {max(abs(d) for d in diffs.values()):.4f}; thresholds that moved: "
                  f"{', '.join(moved) or 'none'}"]
    md = "\n".join(lines) + "\n"
    print("\n" + md)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "choose_box_resolution.json").write_text(json.dumps(res, indent=2, default=str))
    (args.out / "choose_box_resolution.md").write_text(md)
    return 0 if np.isfinite([r["val_iou"] for r in res["rows"]]).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())
