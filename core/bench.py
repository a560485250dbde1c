"""Throughput and latency of the inference backends, per batch size and map method.

Every row times, per batch of B random 224-px images already on the device:

- ``forward``: the bare forward of the backend (the baseline of its rows);
- a map method: forward + map + normalise + upsample to input size + boxes (what the stream
  worker does per batch, minus decoding), i.e. ``backend.forward`` then
  ``core.explain.explain_features``;
- ``pytorch-grad-cam``: the same method from ``pytorch_grad_cam`` 1.5.5 (float32 eager; maps at
  input size, no boxes), where it has the method;
- ``onnxruntime+maps`` (``--in-graph``): the map computed inside the ONNX graph
  (``core.onnx_export``), then normalise + upsample + boxes in torch.

Warm-up iterations are not timed; CUDA is synchronised after each call. Rounds interleave all
rows in time (``--rounds``) so that load from other processes hits every row alike; the torch
forward is measured again at the end (``torch (rerun)``) to show the drift. Ratios compare rows
measured in the same run only. Writes ``bench.json`` and ``bench.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

METHODS_ALL = ("forward", "gradcam", "gradcam++", "layercam", "eigencam", "haycam", "haycam+", "haycam+hr")
BACKENDS_ALL = ("torch", "onnxruntime", "pytorch-grad-cam", "onnxruntime+maps", "onnxruntime-trt", "onnxruntime-nhwc",
                "torch-compile")
GRADCAM_CLASSES = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "layercam": "LayerCAM", "eigencam": "EigenCAM"}


@dataclass
class Row:
    """One measured (backend, method, batch) cell."""

    backend: str
    method: str
    batch: int
    impl: str = ""
    iters: int = 0
    img_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    vs_torch: float | None = None
    vs_forward: float | None = None
    error: str = ""
    times: list = field(default_factory=list, repr=False)


def _percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(q / 100.0 * (len(s) - 1))))
    return s[k]


def _load_model(args: argparse.Namespace):
    """(CamModel, source description): the checkpoint, or a seeded random model of ``--backbone``."""
    from core.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from core.model import CamModel, ModelMeta, build_torchvision

    if args.checkpoint or (args.backbone is None and DEFAULT_CHECKPOINT.is_file()):
        ck = load_checkpoint(args.checkpoint)
        if args.backbone and ck.meta.backbone != args.backbone:
            raise SystemExit(f"--checkpoint {ck.path} is a {ck.meta.backbone}, not --backbone {args.backbone}")
        return ck.model, f"checkpoint {ck.path}"
    backbone = args.backbone or "resnet18"
    torch.manual_seed(0)
    net = build_torchvision(backbone, 2).eval()
    meta = ModelMeta(backbone, ("with_mask", "without_mask"), input_size=args.input_size)
    return CamModel(net, meta).eval(), f"random weights (seed 0), {backbone}"


def HiResLabel(options: dict) -> str:  # noqa: N802 - reads as a label
    """``shift x2, f=0.5``-style label of a haycam+hr variant (the default variant when ``options`` is empty)."""
    from core.cams import MODEL_METHODS

    o = {**MODEL_METHODS["haycam+hr"].default_options, **options}
    extra = {"shift": f" x{o.get('shifts', 2)}", "scale": f" x{o.get('scale', 2.0)}", "fuse": f" {o.get('fuse')}"}
    return f"[{o['variant']}{extra.get(o['variant'], '')}, f={o['variance_fraction']}]"


class Bench:
    """Builds the backends once and times callables."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device if args.device != "auto" else
                                   ("cuda" if torch.cuda.is_available() else "cpu"))
        self.cuda = self.device.type == "cuda"
        if self.cuda and not torch.cuda.is_available():
            raise SystemExit(f"bench: --device {args.device} but torch {torch.__version__} (built for CUDA "
                             f"{torch.version.cuda}) sees no usable CUDA GPU")
        self.model, self.source = _load_model(args)
        self.backends: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.notes: list[str] = []
        self.gradcam_model = None

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def backend(self, name: str) -> Any:
        """The backend called ``name`` (built on first use; a build error is remembered)."""
        if name in self.backends or name in self.errors:
            return self.backends.get(name)
        import copy

        from core.backends import create_backend

        a = self.args
        fp16 = a.fp16 if a.fp16 else (False if not self.cuda else None)
        ort_opts: dict[str, Any] = {"graph_opt": a.ort_graph_opt, "execution_mode": a.ort_execution_mode,
                                    "cache_dir": a.cache_dir}
        if a.threads:
            ort_opts["threads"] = a.threads
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if name in ("torch", "torch-compile"):
                    b = create_backend("torch", device=self.device, fp16=fp16, model=copy.deepcopy(self.model),
                                       compile=name == "torch-compile")
                elif name == "onnxruntime":
                    b = create_backend("onnxruntime", device=self.device, fp16=fp16, model=self.model, **ort_opts)
                elif name == "onnxruntime-nhwc":  # CUDA provider with NHWC kernels (tensor-core friendly)
                    b = create_backend("onnxruntime", device=self.device, fp16=fp16, model=self.model,
                                       provider_options={"CUDAExecutionProvider": {"prefer_nhwc": "1"}}, **ort_opts)
                elif name == "onnxruntime-trt":
                    b = create_backend("onnxruntime", device=self.device, fp16=fp16, model=self.model,
                                       tensorrt=True, **ort_opts)
                elif name == "onnxruntime+maps":
                    b = create_backend("onnxruntime", device=self.device, fp16=False, model=self.model,
                                       maps=("gradcam", "gradcam++", "layercam", "haycam+"), **ort_opts)
                else:
                    raise ValueError(f"unknown backend {name!r}")
            for w in caught:
                print(f"[bench] {name}: warning: {w.message}", file=sys.stderr)
                self.notes.append(f"{name}: {w.message}")
            if b.device.type != self.device.type:
                why = "; ".join(str(w.message) for w in caught) or "fell back"
                raise RuntimeError(f"asked for {self.device.type}, got {b.name} on {b.device} ({why})")
            self.backends[name] = b
            return b
        except Exception as exc:  # noqa: BLE001 - keep going: the row says why
            self.errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"[bench] {name}: cannot build: {self.errors[name]}", file=sys.stderr)
            traceback.print_exc()
            return None

    def runner(self, backend: str, method: str, x: torch.Tensor) -> tuple[Callable[[], Any] | None, str, str]:
        """(callable, implementation label, reason when None) for one row."""
        from core.explain import explain_features

        boxes = not self.args.no_boxes
        size = tuple(x.shape[2:])
        if backend == "pytorch-grad-cam":
            if method not in GRADCAM_CLASSES:
                return None, "", "not in pytorch-grad-cam"
            cam = self._gradcam(method)
            return (lambda: cam(input_tensor=x.float(), targets=None)), f"pytorch_grad_cam.{GRADCAM_CLASSES[method]} fp32", ""
        b = self.backend(backend)
        if b is None:
            return None, "", self.errors.get(backend, "not built")
        xb = x.to(b.device)
        if backend == "onnxruntime+maps":
            return self._in_graph(b, method, xb, boxes)
        if method == "forward":
            return (lambda: b.forward(xb)), b.name, ""
        if method == "haycam+hr":
            return self._model_method(b, method, xb, boxes)
        w = b.head_weights()[0]

        def e2e():
            logits, acts = b.forward(xb)
            return explain_features(logits, acts, method, size, head_weight=w, with_boxes=boxes)

        return e2e, b.name, ""

    def _model_method(self, b: Any, method: str, x: torch.Tensor, boxes: bool):
        """A model method (haycam+hr: the checkpoint's calibrated variant, else its default) end to end."""
        from core.cams import build_model_method
        from core.checkpoint import read_thresholds
        from core.explain import explain_model_method
        from core.localization import stored_threshold

        src = self.args.checkpoint if self.source.startswith("checkpoint") else None
        stored = stored_threshold(read_thresholds(src), method) if self.source.startswith("checkpoint") else None
        options = stored.options if stored is not None else {}
        try:
            run = build_model_method(method, b, options)
        except ValueError as exc:
            return None, "", str(exc).split(";")[0]

        def e2e():
            logits, _ = b.forward(x)
            return explain_model_method(run, x, logits, method, with_boxes=boxes)

        variant = HiResLabel(options)
        return e2e, f"{b.name} {variant}", ""

    def _in_graph(self, b: Any, method: str, x: torch.Tensor, boxes: bool):
        from core.boxes import boxes_from_maps
        from core.onnx_export import haycam_plus_from_gram
        from core.postprocess import normalize_maps, upsample_maps

        size = tuple(x.shape[2:])
        if method in ("gradcam", "gradcam++", "layercam"):
            names = ("logits", f"map_{method}")

            def raw():
                return b.run(x, names)[names[1]]
        elif method == "haycam+":
            def raw():
                out = b.run(x, ("logits", "haycam_gram", "haycam_chsum"))
                side = round(out["haycam_chsum"].shape[1] ** 0.5)
                r, _ = haycam_plus_from_gram(out["haycam_gram"], out["haycam_chsum"])
                return r.reshape(r.shape[0], side, -1)
        else:
            return None, "", "no in-graph variant"

        def e2e():
            maps, _ = normalize_maps(raw().float())
            maps = upsample_maps(maps, size)
            return boxes_from_maps(maps) if boxes else maps

        return e2e, b.name + "+maps", ""

    def _gradcam(self, method: str):
        import copy

        import pytorch_grad_cam as pgc
        from torch import nn

        if self.gradcam_model is None:
            cam_model = copy.deepcopy(self.model).float().to(self.device).eval()

            class Logits(nn.Module):
                def __init__(self, m):
                    super().__init__()
                    self.m = m

                def forward(self, x):
                    return self.m(x)[0]

            layer = cam_model.net.layer4[-1] if cam_model.kind == "resnet" else cam_model.net.features[-1]
            self.gradcam_model = (Logits(cam_model).eval(), layer)
        model, layer = self.gradcam_model
        return getattr(pgc, GRADCAM_CLASSES[method])(model=model, target_layers=[layer])

    def time(self, fn: Callable[[], Any], iters: int) -> list[float]:
        out = []
        for _ in range(iters):
            self.sync()
            t0 = time.perf_counter()
            fn()
            self.sync()
            out.append(time.perf_counter() - t0)
        return out


def run_bench(args: argparse.Namespace) -> dict:
    """Measure every (batch, method, backend) row; returns the JSON-able result."""
    if args.threads:
        torch.set_num_threads(args.threads)
    bench = Bench(args)
    load0 = os.getloadavg()
    t_start = time.time()
    size = bench.model.meta.input_size if bench.model.meta else args.input_size
    rows: dict[tuple, Row] = {}
    fns: dict[tuple, Callable] = {}
    gen = torch.Generator().manual_seed(0)
    inputs = {bs: torch.randn(bs, 3, size, size, generator=gen).to(bench.device) for bs in args.batch_sizes}
    def over_budget() -> bool:
        return bool(args.time_budget) and time.time() - t_start > args.time_budget

    for bs in args.batch_sizes:
        for method in args.methods:
            for backend in args.backends:
                key = (backend, method, bs)
                if over_budget():
                    rows[key] = Row(backend, method, bs, error=f"skipped: --time-budget {args.time_budget}s spent")
                    continue
                try:
                    fn, impl, why = bench.runner(backend, method, inputs[bs])
                except Exception as exc:  # noqa: BLE001 - e.g. pytorch-grad-cam not installed
                    fn, impl, why = None, "", f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                row = Row(backend, method, bs, impl=impl)
                if fn is None:
                    row.error = why
                else:
                    try:
                        bench.time(fn, args.warmup)
                        fns[key] = fn
                    except Exception as exc:  # noqa: BLE001 - a failing row must not end the run
                        row.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                        print(f"[bench] {key}: {row.error}", file=sys.stderr)
                rows[key] = row
    per_round = max(1, args.iters // args.rounds)
    for r in range(args.rounds):
        if r > 0 and over_budget():
            print(f"[bench] --time-budget {args.time_budget}s spent: {r} of {args.rounds} rounds", file=sys.stderr)
            bench.notes.append(f"time budget spent: {r} of {args.rounds} rounds timed")
            break
        for key, fn in fns.items():
            if rows[key].error:
                continue
            try:
                rows[key].times += bench.time(fn, per_round)
            except Exception as exc:  # noqa: BLE001 - a failing row must not end the run
                rows[key].error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(f"[bench] round {r + 1}/{args.rounds} done ({time.time() - t_start:.0f}s)", file=sys.stderr)
    rerun: list[Row] = []
    if "torch" in args.backends and not args.no_rerun and not over_budget():
        for bs in args.batch_sizes:
            fn, impl, why = bench.runner("torch", "forward", inputs[bs])
            row = Row("torch (rerun)", "forward", bs, impl=impl, error=why)
            if fn is not None:
                row.times = bench.time(fn, per_round * args.rounds)
            rerun.append(row)
    for row in list(rows.values()) + rerun:
        if row.times:
            row.iters = len(row.times)
            row.p50_ms = 1e3 * statistics.median(row.times)
            row.p99_ms = 1e3 * _percentile(row.times, 99)
            row.img_s = row.batch / statistics.median(row.times)
    for (backend, method, bs), row in rows.items():
        ref = rows.get(("torch", method, bs))
        if row.img_s and ref and ref.img_s:
            row.vs_torch = row.img_s / ref.img_s
        base_backend = {"pytorch-grad-cam": "torch", "onnxruntime+maps": "onnxruntime"}.get(backend, backend)
        base_backend = base_backend.replace(" (rerun)", "")
        base = rows.get((base_backend, "forward", bs))
        if row.img_s and base and base.img_s:
            row.vs_forward = row.img_s / base.img_s
    try:
        import onnxruntime as ort

        ort_version = ort.__version__
    except ImportError:
        ort_version = "absent"
    machine = {
        "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
        "onnxruntime": ort_version, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "nice": os.nice(0), "loadavg_start": load0, "loadavg_end": os.getloadavg(),
        "device": torch.cuda.get_device_name(bench.device) if bench.cuda else platform.processor() or "cpu",
    }
    cfg = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
           if not k.startswith("_") and isinstance(v, (str, int, float, bool, list, Path, type(None)))}
    return {
        "machine": machine, "config": cfg, "model": bench.source, "input_size": size,
        "seconds": round(time.time() - t_start, 1), "notes": bench.notes,
        "backend_names": {k: getattr(v, "name", k) for k, v in bench.backends.items()},
        "build_errors": bench.errors,
        "rows": [{k: v for k, v in asdict(r).items() if k != "times"}
                 for r in sorted(rows.values(), key=lambda r: r.batch)],  # measured in --batch-sizes order
        "rerun": [{k: v for k, v in asdict(r).items() if k != "times"} for r in sorted(rerun, key=lambda r: r.batch)],
    }


def _f(v: float | None, fmt: str) -> str:
    return "" if v is None else format(v, fmt)


def to_markdown(res: dict) -> str:
    """The result as a Markdown table (plus the drift of the rerun baseline)."""
    m = res["machine"]
    lines = [
        (f"Model: {res['model']}, {res['input_size']} px. Device: {m['device']} ({res['config']['device']}), "
         f"fp16={res['config']['fp16']}, boxes={'no' if res['config']['no_boxes'] else 'yes'}. "
         f"torch {m['torch']} ({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}, "
         f"nice {m['nice']}, load average {m['loadavg_start'][0]:.1f} -> {m['loadavg_end'][0]:.1f}, "
         f"{res['seconds']} s."),
        "",
        "| backend | method | batch | img/s | p50 ms | p99 ms | × torch | × own forward | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in res["rows"] + res["rerun"]:
        note = r["error"] or r["impl"]
        lines.append(f"| {r['backend']} | {r['method']} | {r['batch']} | {_f(r['img_s'], '.1f')} | "
                     f"{_f(r['p50_ms'], '.2f')} | {_f(r['p99_ms'], '.2f')} | {_f(r['vs_torch'], '.2f')} | "
                     f"{_f(r['vs_forward'], '.2f')} | {note} |")
    by = {(r["backend"], r["method"], r["batch"]): r for r in res["rows"]}
    for r in res["rerun"]:
        first = by.get(("torch", "forward", r["batch"]))
        if first and first["img_s"] and r["img_s"]:
            lines.append(f"\nBaseline drift, torch forward batch {r['batch']}: {first['img_s']:.1f} img/s first, "
                         f"{r['img_s']:.1f} img/s at the end ({r['img_s'] / first['img_s']:.2f}×).")
    if res["notes"]:
        lines += ["", "Notes:"] + [f"- {n}" for n in res["notes"]]
    return "\n".join(lines) + "\n"


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list]:
    return lambda s: [kind(v.strip()) for v in s.split(",") if v.strip()]


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``python -m tools.bench`` and ``maskstream bench``."""
    p.add_argument("--backbone", choices=("resnet18", "mobilenet_v2"), default=None,
                   help="random-weight model of this backbone (default: the checkpoint's, else resnet18)")
    p.add_argument("--checkpoint", default=None, help="maskstream checkpoint (default: shipped one if present)")
    p.add_argument("--batch-sizes", type=_csv(int), default=[1, 8], help="comma-separated")
    p.add_argument("--methods", type=_csv(str), default=["forward", "haycam+", "haycam+hr", "gradcam", "eigencam"],
                   help=f"comma-separated from {','.join(METHODS_ALL)}")
    p.add_argument("--backends", type=_csv(str), default=["torch", "onnxruntime", "pytorch-grad-cam"],
                   help=f"comma-separated from {','.join(BACKENDS_ALL)}")
    p.add_argument("--in-graph", action="store_true", help="add the onnxruntime+maps backend (maps in the graph)")
    p.add_argument("--device", default="auto", help="auto|cpu|cuda")
    p.add_argument("--fp16", action="store_true", help="float16 on CUDA (torch and onnxruntime)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per row (split over rounds)")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per row")
    p.add_argument("--rounds", type=int, default=2, help="interleave rows in this many rounds")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and onnxruntime (0: defaults)")
    p.add_argument("--ort-graph-opt", default="all", choices=("disable", "basic", "extended", "all"))
    p.add_argument("--ort-execution-mode", default="sequential", choices=("sequential", "parallel"))
    p.add_argument("--input-size", type=int, default=224, help="input side for random-weight models")
    p.add_argument("--no-boxes", action="store_true", help="stop at the upsampled maps (no connected components)")
    p.add_argument("--no-rerun", action="store_true", help="skip re-measuring the torch forward at the end")
    p.add_argument("--time-budget", type=float, default=0, help="seconds; past it, skip the remaining rows/rounds "
                   "(results so far are still written); 0 = no limit")
    p.add_argument("--cache-dir", default=None, help="ONNX export cache (default $MASKSTREAM_CACHE or ~/.cache/maskstream)")
    p.add_argument("--out", default="out/bench", help="directory for bench.json and bench.md")


def validate(args: argparse.Namespace) -> None:
    """Reject unknown names (raises ValueError naming the flag)."""
    if args.in_graph and "onnxruntime+maps" not in args.backends:
        args.backends = list(args.backends) + ["onnxruntime+maps"]
    for flag, vals, ok in (("--methods", args.methods, METHODS_ALL), ("--backends", args.backends, BACKENDS_ALL)):
        bad = [v for v in vals if v not in ok]
        if bad:
            raise ValueError(f"{flag}: unknown {bad[0]!r}; valid: {', '.join(ok)}")
    if not args.batch_sizes or min(args.batch_sizes) < 1:
        raise ValueError(f"--batch-sizes must be positive integers, but got {args.batch_sizes}")
    if args.iters < 1 or args.rounds < 1:
        raise ValueError("--iters and --rounds must be >= 1")


def main_args(args: argparse.Namespace) -> int:
    """Run, print the Markdown table, write bench.json / bench.md under ``args.out``."""
    validate(args)
    res = run_bench(args)
    md = to_markdown(res)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(res, indent=2))
    (out / "bench.md").write_text(md)
    print(md)
    print(f"wrote {out / 'bench.json'} and {out / 'bench.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return main_args(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
