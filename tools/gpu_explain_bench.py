"""Where the time of an explained batch goes, and what the fixed-shape batch-1 path gains from graphs.

    python -m tools.gpu_explain_bench --device cuda --fp16 [--batch-sizes 1,8,32,128] [--compile] --json out.json

Per batch size, on a seeded random-weight ResNet18 (224 px; the maps' cost does not depend on the
weights), each row timed with the device synchronised around every call (median, p90):

* ``forward``: the bare forward (baseline);
* ``haycam+ e2e``: forward + HayCAM+ + boxes on the 8× grid, no input-size maps (the stream worker);
* ``haycam+ e2e, full boxes``: the same with ``box_resolution="full"`` (the path before the grid);
* ``map only`` / ``grid boxes only``: the two parts after the forward, alone.

Batch 1 also gets the forward replayed from a CUDA graph (``torch.cuda.CUDAGraph``, static input) and,
with ``--compile``, ``torch.compile(mode="reduce-overhead")``, alone and followed by the map and boxes.
Works on the CPU too (no graphs there) so the script can be checked without a GPU.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any, Callable

import torch

from core.explain import explain_features
from core.grid_boxes import boxes_from_grid
from core.model import CamModel, build_torchvision


def timed(fn: Callable[[], Any], dev: torch.device, iters: int, warmup: int) -> dict:
    """Median / p90 milliseconds of ``fn`` (device synchronised around each call)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        ts.append(1e3 * (time.perf_counter() - t))
    ts.sort()
    return {"p50_ms": statistics.median(ts), "p90_ms": ts[int(0.9 * (len(ts) - 1))], "iters": iters}


def graphed_forward(model: torch.nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], Any]:
    """The model's forward captured in a CUDA graph for ``x``'s shape; call with a same-shape input."""
    static_x = x.clone()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.inference_mode():
        for _ in range(3):
            model(static_x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g), torch.inference_mode():
        static_out = model(static_x)

    def run(inp: torch.Tensor):
        static_x.copy_(inp)
        g.replay()
        return static_out

    return run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--fp16", action="store_true", help="float16 model and input (CUDA)")
    ap.add_argument("--backbone", default="resnet18", choices=("resnet18", "mobilenet_v2"))
    ap.add_argument("--batch-sizes", default="8,32,128,1", help="batch 1 last: its torch.compile is the slow part")
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--compile", action="store_true", help="also torch.compile(mode='reduce-overhead') at batch 1")
    ap.add_argument("--no-full", action="store_true", help="skip the full-size box path (slow at batch 128)")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"gpu_explain_bench: --device {a.device} but torch {torch.__version__} sees no CUDA GPU", file=sys.stderr)
        return 2
    dtype = torch.float16 if a.fp16 and dev.type == "cuda" else torch.float32
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    model = CamModel(build_torchvision(a.backbone, 2)).eval().to(dev, dtype)
    head_w = model.head_weights()[0].detach().float()
    rows: list[dict] = []

    def add(name: str, bs: int, fn: Callable[[], Any], iters: int | None = None) -> None:
        try:
            r = timed(fn, dev, iters or a.iters, a.warmup)
            r.update(img_s=bs / (r["p50_ms"] / 1e3))
        except Exception as exc:  # noqa: BLE001 - one failing row must not lose the others
            r = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
        rows.append({"batch": bs, "row": name, **r})
        print(f"  bs={bs:4d} {name:40s} " + (f"{r['p50_ms']:8.3f} ms p50  {r['img_s']:10.0f} img/s"
                                           if "p50_ms" in r else r["error"]), flush=True)

    def measure(bs: int) -> None:
        x = torch.randn(bs, 3, 224, 224, device=dev, dtype=dtype)

        def fwd(x=x):
            with torch.inference_mode():
                return model(x)

        def post(logits, acts, **kw):
            return explain_features(logits.float(), acts.float(), "haycam+", (224, 224), head_weight=head_w,
                                    full_maps=False, **kw)

        logits0, acts0 = fwd()
        low = post(logits0, acts0, with_boxes=False).low_res_maps
        add("forward", bs, fwd)
        add("haycam+ e2e (grid boxes)", bs, lambda: post(*fwd()).boxes)
        if not a.no_full:
            add("haycam+ e2e, full boxes (before)", bs, lambda: post(*fwd(), box_resolution="full").boxes,
                iters=max(5, a.iters // 5))
        add("map only (after forward)", bs, lambda: post(logits0, acts0, with_boxes=False).low_res_maps)
        add("grid boxes only (after map)", bs, lambda low=low: boxes_from_grid(low, (224, 224)))
        if bs == 1 and dev.type == "cuda":
            try:
                gf = graphed_forward(model, x)
                add("forward, CUDA graph", bs, lambda: gf(x))
                add("haycam+ e2e, forward in CUDA graph", bs, lambda: post(*gf(x)).boxes)
            except Exception as exc:  # noqa: BLE001
                rows.append({"batch": bs, "row": "forward, CUDA graph", "error": f"{type(exc).__name__}: {exc}"})
                print(f"  CUDA graph capture failed: {exc}", flush=True)
        if bs == 1 and a.compile:
            finish()  # keep the rows so far should the compile outlast the stage's timeout
            t0 = time.perf_counter()
            try:
                cm = torch.compile(model, mode="reduce-overhead" if dev.type == "cuda" else "default")

                def cfwd():
                    with torch.inference_mode():
                        return cm(x)

                for _ in range(3):
                    cfwd()
                print(f"  torch.compile warm-up {time.perf_counter() - t0:.1f} s", flush=True)
                add("forward, torch.compile", bs, cfwd)
                add("haycam+ e2e, forward torch.compile", bs, lambda: post(*[t.clone() for t in cfwd()]).boxes)
            except Exception as exc:  # noqa: BLE001
                rows.append({"batch": bs, "row": "forward, torch.compile", "error": f"{type(exc).__name__}: {exc}"})
                print(f"  torch.compile failed: {exc}", flush=True)

    def finish() -> dict:
        res = summarise(rows, dev, dtype, a.backbone)
        if a.json:  # after every batch size: a stage cut by its timeout keeps what it measured
            with open(a.json, "w") as f:
                json.dump(res, f, indent=2)
        return res

    for bs in (int(v) for v in a.batch_sizes.split(",")):
        measure(bs)
        finish()
    best = finish()["batch1_best"]
    if best:
        print(f"batch-1 HayCAM+ with boxes, best: {best['row']}: {best['p50_ms']:.2f} ms p50 (target < 3 ms)")
    return 0


def summarise(rows: list[dict], dev: torch.device, dtype: torch.dtype, backbone: str) -> dict:
    """Rows with their ratio to the same batch's forward, and the best batch-1 explained row."""
    by = {(r["batch"], r["row"]): r for r in rows}
    for r in rows:
        base = by.get((r["batch"], "forward"))
        if "img_s" in r and base and "img_s" in base:
            r["vs_forward"] = r["img_s"] / base["img_s"]
    b1 = [r for r in rows if r["batch"] == 1 and r["row"].startswith("haycam+ e2e") and "p50_ms" in r
          and "full" not in r["row"]]
    best = min(b1, key=lambda r: r["p50_ms"]) if b1 else None
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu", "dtype": str(dtype),
            "torch": torch.__version__, "backbone": backbone, "rows": rows,
            "batch1_best": best and {"row": best["row"], "p50_ms": best["p50_ms"]}}


if __name__ == "__main__":
    raise SystemExit(main())
