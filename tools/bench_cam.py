"""Benchmark: bare forward vs. each map method end to end vs. pytorch-grad-cam, same model and batch.

Usage:
    python -m tools.bench_cam [--backbone resnet18] [--batch 16] [--size 224] [--iters 5] [--device cpu]

Prints a Markdown table: median seconds per batch, images/s, ratio to the bare forward, and
speed-up over pytorch-grad-cam's implementation of the same method (measured in the same run).
"Ours" = forward + map + per-image normalisation + upsampling + boxes; pytorch-grad-cam's
= its forward + map + its per-image scaling (it computes no boxes).

Post-forward rows (``map-only:``) time what follows the forward on its activations. For HayCAM+
three box paths are measured side by side: ``map-only:haycam+`` (maps at input size, boxes on
the 8× grid: ``core.explain``'s default), ``map-only:haycam+:lowres`` (boxes on the grid, no
input-size maps: what the stream worker does) and ``map-only:haycam+:full`` (boxes from the
input-size maps, the path before the grid, kept as ``box_resolution="full"``); likewise
``haycam+`` vs ``haycam+:full`` end to end. Those rows all run on today's helpers; the issue's "today's path
measured beside it" is the code when issue 16 was filed, so the same run ends with
``tools.bench_postforward.compare``: that code (``--against``, default 5f1ac1b, ``git archive``) and the stream
worker's path, each in fresh processes, alternating over ``--old-rounds`` rounds (``--old-rounds 0`` skips it).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

import core
from core.model import CamModel, build_torchvision
from tools.bench_postforward import ISSUE_16_BASE, OLD, WORKER, compare

PGC = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM", "eigencam": "EigenCAM"}


def timeit(fn: Callable[[], object], iters: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``iters`` runs after one warm-up (GPU synchronised)."""
    return timeit_interleaved({"fn": fn}, iters, device)["fn"]


def timeit_interleaved(fns: dict[str, Callable[[], object]], iters: int, device: torch.device) -> dict[str, float]:
    """Median wall time of each of ``fns`` over ``iters`` rounds, the functions run in turn within a round.

    Alternating the candidates inside each round exposes them to the same background load, so their
    ratios hold on a busy machine where timing one after the other drifts with the load.
    """
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(iters):
        for k, fn in fns.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="resnet18", choices=["resnet18", "mobilenet_v2"])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--post-iters", type=int, default=40,
                    help="rounds for the post-forward (map-only) rows, timed interleaved (default 40)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--no-reference", action="store_true", help="skip pytorch-grad-cam")
    ap.add_argument("--json", default=None, help="also write the rows as JSON to this file")
    ap.add_argument("--against", default=ISSUE_16_BASE,
                    help=f"git revision whose core/ is the old code for the post-forward ratio (default {ISSUE_16_BASE})")
    ap.add_argument("--old-rounds", type=int, default=5,
                    help="alternating rounds against the old code (tools.bench_postforward; default 5, 0 skips)")
    args = ap.parse_args(argv)
    if args.old_rounds > 0 and (args.device != "cpu" or args.backbone != "resnet18" or args.size != 224):
        print("bench_cam: note: the comparison with the old code runs ResNet18 at 224 px on the CPU only; skipped",
              file=sys.stderr)
        args.old_rounds = 0

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    # A freshly initialised torchvision model makes tiny activations; flushing denormals keeps the
    # random-weight forward at the speed a trained model runs at.
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    net = build_torchvision(args.backbone, 2).eval().to(device)
    model = CamModel(net).eval()
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    rows: list[dict] = []
    todo = ["forward"] + list(core.METHODS) + ([] if args.no_reference else [f"pgc:{m}" for m in PGC])
    todo += ["haycam+:full", "map-only:haycam+", "map-only:haycam+:lowres", "map-only:haycam+:full",
             "map-only:eigencam"] + ([] if args.no_reference else ["map-only:pgc:eigencam"])
    with torch.inference_mode():
        logits0, acts0 = model(x)
    post: dict[str, Callable[[], object]] = {}
    bar = tqdm(todo, desc="benchmark", unit="row")
    for name in bar:
        bar.set_postfix_str(name)
        if name == "forward":
            def fn():
                with torch.inference_mode():
                    return model(x)
        elif name == "map-only:pgc:eigencam":
            from pytorch_grad_cam.utils.image import scale_cam_image
            from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

            acts_np = acts0.float().cpu().numpy()

            def fn(acts_np=acts_np):  # what pytorch-grad-cam's EigenCAM does after its forward
                cam = np.maximum(get_2d_projection(acts_np.copy()), 0)
                return scale_cam_image(cam, (args.size, args.size))
        elif name.startswith("map-only:"):
            method, _, variant = name.split(":", 1)[1].partition(":")
            kw = {"full": {"box_resolution": "full"}, "lowres": {"full_maps": False}}.get(variant, {})

            def fn(method=method, kw=kw):  # ours after the forward: map, normalise, upsample, boxes
                return core.explain_features(logits0, acts0, method, (args.size, args.size), **kw)
        elif name == "haycam+:full":
            def fn():
                return core.explain(model, x, "haycam+", box_resolution="full")
        elif name.startswith("pgc:"):
            import pytorch_grad_cam as pgc
            from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

            layer = net.layer4[-1] if model.kind == "resnet" else net.features[-1]
            cam = getattr(pgc, PGC[name[4:]])(model=net, target_layers=[layer])
            targets = [ClassifierOutputTarget(0)] * args.batch

            def fn(cam=cam, targets=targets):
                return cam(input_tensor=x, targets=targets)
        else:
            def fn(name=name):
                return core.explain(model, x, name)
        if name.startswith("map-only:"):
            post[name] = fn  # timed together below, interleaved
            continue
        t = timeit(fn, args.iters, device)
        rows.append({"name": name, "sec_per_batch": t, "img_per_s": args.batch / t})
    for name, t in timeit_interleaved(post, args.post_iters, device).items():
        rows.append({"name": name, "sec_per_batch": t, "img_per_s": args.batch / t})
    base = rows[0]["img_per_s"]
    by_name = {r["name"]: r for r in rows}
    print(f"\n{args.backbone}, batch {args.batch}, {args.size}px, {device}, torch threads {torch.get_num_threads()}, "
          f"median of {args.iters} (post-forward rows: median of {args.post_iters} interleaved rounds)\n")
    print("| what | s/batch | img/s | × bare forward | speed-up vs pytorch-grad-cam |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        ref = by_name.get(f"pgc:{r['name']}")
        r["x_forward"] = r["img_per_s"] / base
        if r["name"] in ("map-only:haycam+", "map-only:eigencam"):
            ref = by_name.get("map-only:pgc:eigencam")
        r["x_pgc"] = r["img_per_s"] / ref["img_per_s"] if ref else None
        speed = f"{r['x_pgc']:.2f}×" if r["x_pgc"] else ""
        print(f"| {r['name']} | {r['sec_per_batch']:.3f} | {r['img_per_s']:.1f} | {r['x_forward']:.2f} | {speed} |")
    hp = by_name["haycam+"]["img_per_s"]
    print(f"\nHayCAM+ end to end: {hp / base:.2f}× the bare forward (target ≥ 0.85)")
    if "pgc:eigencam" in by_name:
        print(f"HayCAM+ end to end vs pytorch-grad-cam EigenCAM end to end: "
              f"{hp / by_name['pgc:eigencam']['img_per_s']:.2f}× (target ≥ 5)")
        mo = by_name["map-only:haycam+"]["img_per_s"] / by_name["map-only:pgc:eigencam"]["img_per_s"]
        print(f"after the forward only (HayCAM+ with boxes vs pytorch-grad-cam EigenCAM without): {mo:.1f}×")
    full = by_name["map-only:haycam+:full"]["sec_per_batch"]
    print("\nHayCAM+ after the forward (map + boxes), ms per image:")
    for key, label in (("map-only:haycam+:full", "input-size maps, boxes on them (today's helpers)"),
                       ("map-only:haycam+", "input-size maps, boxes on the grid (core.explain default)"),
                       ("map-only:haycam+:lowres", "grid boxes, no input-size maps (the stream worker)")):
        sec = by_name[key]["sec_per_batch"]
        print(f"  {label}: {1e3 * sec / args.batch:.3f} ms/image, {full / sec:.2f}× less than the first")
    old = None
    if args.old_rounds > 0:
        print(f"\nAgainst the code when issue 16 was filed (core/ at {args.against}), each in fresh processes:\n")
        try:
            old = compare(args.against, args.old_rounds, batch=args.batch, variants=(OLD, WORKER))
        except ValueError as exc:
            print(f"bench_cam: error: {exc}", file=sys.stderr)
            return 2
        print(old.table())
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"config": vars(args), "rows": rows, "against_old_code": vars(old) if old else None}, f,
                      indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
