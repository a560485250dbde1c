"""Where HayCAM+ spends its time after the forward: batched ``eigh`` and the whole map, per device.

HayCAM+ needs one eigendecomposition of a 49×49 Gram matrix per image (224 px). On CUDA,
``torch.linalg.eigh`` may loop over the batch (cuSOLVER syevj for n > 32), so this prints the
map cost per batch size on each device, beside the same work on the CPU, to show whether the
map or the forward limits end-to-end throughput.

    python -m tools.map_bench --device cuda --batch-sizes 1,8,32,128 --out out/map_bench
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch


def _time(fn, device: torch.device, iters: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def dump(rows: list[dict], out: Path) -> str:
    """Write map_bench.json / map_bench.md under ``out``; returns the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "map_bench.json").write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=2))
    keys = ["device", "batch", "gram", "eigh_ms", "eigh_cpu_roundtrip_ms", "haycam+_raw_eigh_same_device_ms",
            "haycam+_raw_eigh_cpu_ms", "haycam+_raw_gesvda_ms", "eigh_vs_cpu_maxdiff", "gesvda_vs_cpu_maxdiff",
            "haycam+_raw_ms", "haycam+_e2e_cv2threads1_ms", "haycam+_e2e_cv2threads4_ms", "haycam+_e2e_noboxes_ms", "haycam+_e2e_ms", "error"]
    md = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    md += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    text = "\n".join(md) + "\n"
    (out / "map_bench.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    from core.cams import CamInputs
    from core.cams.haycam import haycam_plus
    from core.explain import explain_features

    p = argparse.ArgumentParser(prog="python -m tools.map_bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch-sizes", default="1,8,32,128")
    p.add_argument("--channels", type=int, default=512)
    p.add_argument("--side", type=int, default=7)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--out", default="out/map_bench")
    a = p.parse_args(argv)
    devices = [torch.device(a.device)] + ([torch.device("cpu")] if torch.device(a.device).type != "cpu" else [])
    rows = []
    g = torch.Generator().manual_seed(0)
    n = a.side * a.side
    for bs in [int(v) for v in a.batch_sizes.split(",")]:
        acts0 = torch.relu(torch.randn(bs, a.channels, a.side, a.side, generator=g))
        for dev in devices:
            try:
                acts = acts0.to(dev)
            except Exception as exc:  # noqa: BLE001 - e.g. no usable GPU: say so, keep the CPU rows
                rows.append({"device": str(dev), "batch": bs, "error": f"{type(exc).__name__}: {exc}"})
                print(json.dumps(rows[-1]), flush=True)
                continue
            x = acts.flatten(2).transpose(1, 2)
            gram = x @ x.transpose(1, 2)
            logits = torch.randn(bs, 2, device=dev)
            from core.cams import pca as pca_mod

            def with_solver(fn, solver: str):
                def run():
                    old = pca_mod.CUDA_PCA_SOLVER
                    pca_mod.CUDA_PCA_SOLVER = solver
                    try:
                        return fn()
                    finally:
                        pca_mod.CUDA_PCA_SOLVER = old
                return run

            cells = {
                "eigh_ms": lambda g=gram: torch.linalg.eigh(g),
                "eigh_cpu_roundtrip_ms": lambda g=gram: [t.to(g.device) for t in torch.linalg.eigh(g.cpu())],
                "haycam+_raw_eigh_same_device_ms": with_solver(lambda a=acts: haycam_plus(CamInputs(a)), "eigh"),
                "haycam+_raw_eigh_cpu_ms": with_solver(lambda a=acts: haycam_plus(CamInputs(a)), "cpu-eigh"),
                "haycam+_raw_gesvda_ms": with_solver(lambda a=acts: haycam_plus(CamInputs(a)), "gesvda"),
                "haycam+_raw_ms": lambda a=acts: haycam_plus(CamInputs(a)),
                "haycam+_e2e_ms": lambda a=acts, lg=logits: explain_features(lg, a, "haycam+", (224, 224)),
                "haycam+_e2e_noboxes_ms": lambda a=acts, lg=logits: explain_features(
                    lg, a, "haycam+", (224, 224), with_boxes=False),
            }
            row = {"device": str(dev), "batch": bs, "gram": f"{bs}x{n}x{n}"}
            for name, fn in cells.items():
                try:
                    row[name] = round(1e3 * _time(fn, dev, a.iters, a.warmup), 3)
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    row[name] = f"{type(exc).__name__}: {exc}"
            if dev.type == "cuda":  # do the solvers agree? (max |difference| of [0, 1] maps)
                try:
                    from core.postprocess import normalize_maps

                    ref = normalize_maps(with_solver(lambda a=acts: haycam_plus(CamInputs(a)).raw, "cpu-eigh")())[0]
                    for solver in ("eigh", "gesvda"):
                        got = normalize_maps(with_solver(lambda a=acts: haycam_plus(CamInputs(a)).raw, solver)())[0]
                        row[f"{solver}_vs_cpu_maxdiff"] = float((got - ref).abs().max())
                except Exception as exc:  # noqa: BLE001 - report, keep going
                    row["solver_check"] = f"{type(exc).__name__}: {exc}"
            import cv2

            for nthreads in (1, 4):
                prev = cv2.getNumThreads()
                cv2.setNumThreads(nthreads)
                try:
                    row[f"haycam+_e2e_cv2threads{nthreads}_ms"] = round(1e3 * _time(
                        lambda a=acts, lg=logits: explain_features(lg, a, "haycam+", (224, 224)), dev, a.iters, a.warmup), 3)
                finally:
                    cv2.setNumThreads(prev)
            rows.append(row)
            print(json.dumps(row), flush=True)
            dump(rows, Path(a.out))  # after every row: a timeout keeps what was measured
    md = dump(rows, Path(a.out))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
