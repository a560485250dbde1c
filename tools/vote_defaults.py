"""Choose the per-person vote's defaults on the VAL side of facemask_voc (never the test side).

Every val face is cut into several context windows (``--looks`` seeds: different framing and scale of the
same face, the closest thing to several video frames of one person that this data has) and classified by
the shipped model. From those classifications:

1. **Accuracy by face size and confidence** (one row per bin): where the classifier's top probability
   stops being informative gives ``min_confidence``; where it is nearly always right gives
   ``full_confidence``; the log-odds of being right for faces under 16 px against the others gives
   ``small_face_weight`` (a vote's weight is its evidence: ``log(acc / (1 - acc))``, relative).
2. **The vote replayed per face**: each face's looks in a seeded random order, cycled, through
   ``core.track.PersonVote`` with each candidate ``decide_margin``; person-level accuracy (faces >= 16 px
   and < 16 px) and votes to a decision. The default is the smallest margin reaching 0.99 on faces
   >= 16 px. Looks of one face are less alike than consecutive video frames (which repeat their errors),
   so this is a lower bound on the evidence needed, not a proof.

    python -m tools.vote_defaults --data ../shared/data/facemask_voc [--looks 6] [--out out/vote_defaults.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def classify(images: list[np.ndarray], batch: int = 32) -> np.ndarray:
    """(N, K) probabilities of the shipped model (torch, CPU)."""
    import torch

    from core.checkpoint import load_checkpoint
    from core.preprocess import images_to_input

    ck = load_checkpoint()
    model = ck.model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            logits, _ = model(images_to_input(images[i : i + batch], ck.meta))
            out.append(torch.softmax(logits.float(), 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, len(ck.meta.class_names)))


def llr(acc: float) -> float:
    acc = min(max(acc, 1e-3), 1 - 1e-3)
    return float(np.log(acc / (1 - acc)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/facemask_voc"))
    ap.add_argument("--looks", type=int, default=6, help="context windows (seeds) per face")
    ap.add_argument("--out", default="out/vote_defaults.json")
    a = ap.parse_args(argv)
    from core.checkpoint import load_checkpoint
    from core.data.context_crops import build_context_crops
    from core.data.splits import voc_split
    from core.data.voc import read_duplicate_groups, read_voc
    from core.track import PersonVote, VoteParams

    data = Path(a.data)
    images = read_voc(data)
    val = voc_split(images, read_duplicate_groups(data))["val"]
    names = tuple(load_checkpoint().meta.class_names)
    t0 = time.time()
    looks: dict[tuple[str, tuple], list[int]] = {}
    crops, labels, sizes = [], [], []
    for seed in range(a.looks):
        for c in build_context_crops(data, val, seed, size=224):
            key = (c.source_file, tuple(round(v) for v in c.source_box))
            looks.setdefault(key, []).append(len(crops))
            crops.append(c.image)
            labels.append(names.index(c.label))
            sizes.append(c.face_px)
    print(f"# {len(val)} val photos, {len(looks)} faces, {len(crops)} crops ({a.looks} looks per face)", flush=True)
    probs = classify(crops)
    print(f"# classified in {time.time() - t0:.0f} s", flush=True)
    labels_a, sizes_a = np.array(labels), np.array(sizes)
    top, pred = probs.max(1), probs.argmax(1)
    right = pred == labels_a
    small = sizes_a < 16
    table = []
    edges = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0001]
    for name, sel in (("< 16 px", small), (">= 16 px", ~small)):
        for lo, hi in zip(edges[:-1], edges[1:]):
            m = sel & (top >= lo) & (top < hi)
            if m.sum():
                table.append({"faces": name, "conf": f"[{lo:.2f}, {min(hi, 1):.2f})", "n": int(m.sum()),
                              "acc": round(float(right[m].mean()), 4)})
    acc_small, acc_large = float(right[small].mean()), float(right[~small].mean())
    rep = {
        "val_crops": len(crops),
        "acc_small": round(acc_small, 4),
        "acc_large": round(acc_large, 4),
        "n_small": int(small.sum()),
        "n_large": int((~small).sum()),
        "small_face_weight_llr_ratio": round(llr(acc_small) / llr(acc_large), 3),
        "by_confidence": table,
    }
    # the vote replayed per face
    rng = np.random.default_rng(0)
    sims = []
    for margin in (2.0, 3.0, 4.0, 5.0):
        prm = VoteParams(decide_margin=margin, min_votes=3, cap=max(5.0, margin))
        res = {"small": [], "large": []}
        for idx in looks.values():
            order = list(rng.permutation(idx)) * 4  # up to 4 cycles through the face's looks
            v = PersonVote(names, prm)
            n = 0
            for j in order:
                n += 1
                if v.add(probs[j], sizes[j], n * 0.04) is not None:
                    break
            key = "small" if sizes[idx[0]] < 16 else "large"
            res[key].append((v.label, names[labels[idx[0]]], n if v.decided else None))
        row = {"decide_margin": margin}
        for key, rs in res.items():
            dec = [r for r in rs if r[0] != "undecided"]
            row[f"{key}_decided"] = round(len(dec) / max(1, len(rs)), 4)
            row[f"{key}_person_acc"] = round(sum(r[0] == r[1] for r in dec) / max(1, len(dec)), 4)
            row[f"{key}_votes_median"] = float(np.median([r[2] for r in dec])) if dec else None
        sims.append(row)
    rep["vote_replay"] = sims
    per_crop_large = acc_large
    rep["per_crop_acc_large"] = round(per_crop_large, 4)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(rep, indent=2) + "\n")
    print(json.dumps(rep, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
