"""Why does (or doesn't) HayCAM+ localise? Ablations on the VAL split only (never on test).

    python -m tools.eval_ablation --data ../shared/data/facemask_voc --checkpoint PATH [--out out/ablation.json]

For each variant the box threshold is fitted on the same val crops (as ``eval --calibrate`` does),
so the numbers are optimistic by construction and serve only to compare variants:

* ``haycam+ f=…``: explained-variance fraction 0.5 … 0.99 (the paper uses 0.9);
* ``eigencam`` (n = 1), ``haycam+ relu`` (negative parts of the summed map cut), ``haycam+ flipped``
  (the sign convention reversed: shows whether the sign matters);
* ``haycam+hr`` variants (``core.cams.haycam_hr``).

Besides each variant's val IoU at its own best threshold, the table gives two threshold-free
diagnostics that say *why* a map localises well or not:

* **oracle IoU**: per crop, the best IoU of any component box at any map threshold (the
  MaxBoxAccV2 curve), averaged. No single-threshold rule can beat it, so it bounds what
  threshold tuning could ever give that map;
* **peak in box**: how often the map's maximum lies inside the face box;
* **box/GT area**: median ratio of the predicted box's area to the face box's area (> 1: the
  boxes come out too large).

It also prints the distribution of the number of components HayCAM+ keeps.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from core.cams import CamInputs
from core.cams.haycam import haycam_plus
from core.checkpoint import load_checkpoint
from core.evaluation.eval import compute_maps, hr_candidates, load_splits, make_crops
from core.localization import box_area_ratio, calibrate_threshold, peak_in_box, score_method, threshold_candidates
from core.postprocess import normalize_maps
from core.preprocess import images_to_input

FRACTIONS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


@torch.no_grad()
def haycam_variants(ckpt, crops, batch_size: int = 32) -> tuple[dict, np.ndarray]:
    """Normalised small maps (N, h, w) per variant name, and HayCAM+'s component counts (N,)."""
    out: dict[str, list] = {}
    counts = []
    for s in range(0, len(crops), batch_size):
        x = images_to_input(crops.images[s:s + batch_size], ckpt.meta)
        _, acts = ckpt.model(x)
        a = acts.float()
        for f in FRACTIONS:
            r = haycam_plus(CamInputs(a, None, {"variance_fraction": f}))
            out.setdefault(f"haycam+ f={f}", []).append(normalize_maps(r.raw)[0])
            if f == 0.9:
                counts.append(r.n_components)
                out.setdefault("haycam+ relu", []).append(normalize_maps(torch.relu(r.raw))[0])
                out.setdefault("haycam+ flipped", []).append(normalize_maps(-r.raw)[0])
    return {k: torch.cat(v) for k, v in out.items()}, torch.cat(counts).numpy()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--limit", type=int, default=0, help="first N val crops only (smoke runs)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    ckpt = load_checkpoint(args.checkpoint)
    _, val_images = load_splits(args.data, "test", args.seed)
    val = make_crops(args.data, val_images, args.seed, ckpt.meta.input_size, args.limit)
    size = (ckpt.meta.input_size,) * 2
    candidates = hr_candidates(ckpt.model)
    print(f"{len(val)} val crops; maps for {len(FRACTIONS) + 2 + 3 + len(candidates)} variants, then a threshold each", file=sys.stderr)
    maps, counts = haycam_variants(ckpt, val)
    hr = {f"haycam+hr {c.variant}{'/' + c.fuse if c.variant == 'fuse' else ''} f={c.variance_fraction}": c
          for c in candidates}
    ms = compute_maps(ckpt, val, ["eigencam", "gradcam", "layercam"], hr, progress=True)
    maps.update(ms.maps)
    rows = []
    cands = threshold_candidates()
    for name, m in tqdm(maps.items(), desc="variants", unit="map", file=sys.stderr):
        cal = calibrate_threshold(m, val.boxes, cands, size)
        sc = score_method(m, val.boxes, cal.threshold, size)
        rows.append({"variant": name, "grid": list(m.shape[-2:]), "val_iou": cal.mean_iou,
                     "threshold": f"{cal.threshold.mode} {cal.threshold.value:.2f}",
                     "oracle_iou": float(sc.best_iou.max(axis=1).mean()),
                     "peak_in_box": float(peak_in_box(m, val.boxes, size).mean()),
                     "area_ratio": float(np.nanmedian(box_area_ratio(sc.pred, val.boxes)))})
    print(f"VAL split only: {len(val)} context crops, {ckpt.meta.backbone} ({ckpt.path})\n")
    print("| variant | grid | val IoU (own best threshold) | threshold | oracle IoU | peak in box | box/GT area |\n"
          "|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["val_iou"]):
        print(f"| {r['variant']} | {r['grid'][0]}x{r['grid'][1]} | {r['val_iou']:.4f} | {r['threshold']} | "
              f"{r['oracle_iou']:.4f} | {r['peak_in_box']:.3f} | {r['area_ratio']:.2f} |")
    uniq, cnt = np.unique(counts, return_counts=True)
    print("\nHayCAM+ components kept at f=0.9: " + ", ".join(f"n={u}: {c}" for u, c in zip(uniq, cnt)))
    print(f"({time.time() - t0:.0f} s)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"rows": rows, "n_components": dict(zip(map(int, uniq), map(int, cnt)))},
                                       indent=2))
    return 0


def cli(argv=None) -> int:
    """``main`` with bad input (a missing data folder, an unreadable checkpoint) as one line and exit 2."""
    from core.checkpoint import CheckpointError
    from stream.errors import UserError

    try:
        return main(argv)
    except (UserError, CheckpointError) as exc:
        print(f"eval_ablation: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(cli())
