#!/usr/bin/env bash
# GPU check for maskstream: CAM/parity tests on CUDA and the fp16 benchmark, under 5 minutes.
#
#   OUT=$OUT bash tools/gpu_check.sh 2>&1 | tee $OUT/gpu.log        (OUT defaults to ./out)
#
# Installs nothing and needs no network. Each stage runs under its own hard timeout and
# records its exit code, so one failure never loses the others. Writes under $OUT:
#   gpu_diag.txt                 python / nvidia-smi / torch / onnxruntime diagnostics
#   gpu_tests.log, gpu_tests.xml pytest on CUDA (MASKSTREAM_TEST_DEVICE=cuda)
#   bench_gpu/bench.{json,md}    torch vs onnxruntime (NCHW and NHWC) vs pytorch-grad-cam, ResNet18, 224 px, fp16,
#                                batch 1/8/32/128, bare forward + HayCAM+ (+ GradCAM) end to end
#   map_bench/map_bench.{json,md} HayCAM+ map cost alone (batched eigh) on CUDA and CPU
#   gpu_summary.md               stage exit codes and the targets, pass/fail
# Environment: PYTHON (default: .venv/bin/python if present, else python3), OUT, BUDGET_S (default 270).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-./out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
BUDGET_S="${BUDGET_S:-270}"  # stages; + <= 25 s for the summary: under 5 minutes in all
export MASKSTREAM_CACHE="${MASKSTREAM_CACHE:-${TMPDIR:-/tmp}/maskstream-gpu-cache}"  # exports stay out of $OUT
export PYTHONDONTWRITEBYTECODE=1
STATUS="$OUT/gpu_stages.tsv"
: > "$STATUS"
START=$SECONDS

# stage NAME TIMEOUT_S CMD...: run CMD (a program; functions go through bash -c) under a hard timeout,
# skipped when the budget is spent.
stage() {
  local name="$1" limit="$2"; shift 2
  local left=$(( BUDGET_S - (SECONDS - START) ))
  if [ "$left" -lt 15 ]; then
    echo "== $name: SKIPPED (time budget spent)"; printf '%s\tskipped\t0\n' "$name" >> "$STATUS"; return 0
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  echo "== $name (timeout ${limit}s, $(( SECONDS - START ))s elapsed)"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@"
  local rc=$?
  [ "$rc" -eq 124 ] && echo "== $name: TIMED OUT after ${limit}s"
  echo "== $name: rc=$rc in $(( SECONDS - t0 ))s"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - t0 ))" >> "$STATUS"
  return 0
}

diag() {
  echo "date: $(date -u +%FT%TZ)"; echo "python: $PY"
  "$PY" --version 2>&1
  nvidia-smi 2>&1 || echo "nvidia-smi: not available"
  "$PY" -c 'import torch' 2>&1 && echo "import torch: ok" || echo "import torch: FAILED"
  "$PY" - <<'EOF' 2>&1
import os, sys
import torch
print("torch", torch.__version__, "cuda build", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("cuda available:", torch.cuda.is_available(), "devices:", torch.cuda.device_count())
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device 0:", p.name, f"{p.total_memory / 2**30:.1f} GiB", "cc", f"{p.major}.{p.minor}")
try:
    import onnxruntime as ort
    from onnxruntime.capi import build_and_package_info as bi
    print("onnxruntime", ort.__version__, bi.package_name, "built for CUDA", getattr(bi, "cuda_version", "?"))
    print("providers built in:", ort.get_available_providers())
    import numpy as np
    from onnx import TensorProto, helper
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    for label, prep in (("after import torch", None), ("after preload_dlls", "preload")):
        if prep and hasattr(ort, "preload_dlls"):
            ort.preload_dlls(cuda=True, cudnn=True, msvc=False)
        s = ort.InferenceSession(m.SerializeToString(), providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        print(f"CUDA EP {label}:", "LOADS" if "CUDAExecutionProvider" in s.get_providers() else "does NOT load",
              s.get_providers())
    try:
        import tensorrt  # noqa: F401
        print("tensorrt python package: present")
    except ImportError:
        print("tensorrt python package: absent")
except Exception as exc:
    print("onnxruntime check failed:", type(exc).__name__, exc)
EOF
  local so
  so="$("$PY" -c 'import onnxruntime,os;print(os.path.join(os.path.dirname(onnxruntime.__file__),"capi","libonnxruntime_providers_cuda.so"))' 2>/dev/null)"
  [ -n "$so" ] && [ -f "$so" ] && { echo "ldd $so (outside python, so torch's libraries are not loaded):"; ldd "$so" | grep -E "cuda|cublas|cudnn|curand|cufft|not found"; }
  ldconfig -p 2>/dev/null | grep -q libnvinfer.so && echo "libnvinfer: found" || echo "libnvinfer: not found (no TensorRT EP)"
}

tests() {
  local files=(tests/test_backends.py tests/test_onnx_export.py)
  for f in tests/test_cams*.py; do [ -f "$f" ] && files+=("$f"); done
  MASKSTREAM_TEST_DEVICE=cuda "$PY" -m pytest -q -p no:cacheprovider \
    --junitxml "$OUT/gpu_tests.xml" "${files[@]}" 2>&1
}

bench() {
  "$PY" -m core.bench --device cuda --fp16 --backbone resnet18 --batch-sizes 128,1,32,8 \
    --methods forward,haycam+,gradcam --backends torch,onnxruntime,onnxruntime-nhwc,pytorch-grad-cam \
    --iters 40 --warmup 10 --rounds 2 --time-budget 95 --out "$OUT/bench_gpu" 2>&1 | grep -v "onnxruntime:Default" | tail -n 60
  return "${PIPESTATUS[0]}"
}

map_bench() {
  "$PY" -m tools.map_bench --device cuda --batch-sizes 1,8,32,128 --iters 10 --out "$OUT/map_bench" 2>&1 | tail -n 20
  return "${PIPESTATUS[0]}"
}

bench_trt() {
  ldconfig -p 2>/dev/null | grep -q libnvinfer.so || { echo "no libnvinfer: TensorRT stage skipped"; return 0; }
  "$PY" -m core.bench --device cuda --fp16 --backbone resnet18 --batch-sizes 1,128 --methods forward,haycam+ \
    --backends torch,onnxruntime-trt --iters 20 --warmup 5 --rounds 1 --time-budget 50 --out "$OUT/bench_gpu_trt" 2>&1 | tail -n 30
  return "${PIPESTATUS[0]}"
}

summary() {
  "$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
lines = ["# maskstream GPU check", "", "| stage | rc | seconds |", "|---|---|---:|"]
for row in (out / "gpu_stages.tsv").read_text().splitlines():
    name, rc, s = row.split("\t")
    lines.append(f"| {name} | {rc} | {s} |")
bj = out / "bench_gpu" / "bench.json"
if bj.is_file():
    res = json.loads(bj.read_text())
    rows = {(r["backend"], r["method"], r["batch"]): r for r in res["rows"]}
    lines += ["", f"Device: {res['machine']['device']}", "",
              "| target | torch | onnxruntime |", "|---|---|---|"]
    def cell(backend, test):
        try:
            return test(backend)
        except Exception as exc:
            return f"n/a ({type(exc).__name__})"
    def thr(b):
        r = rows[(b, "haycam+", 128)]
        return f"{'PASS' if r['img_s'] >= 5000 else 'FAIL'} {r['img_s']:.0f} img/s" if r["img_s"] else f"n/a {r['error'][:80]}"
    def ratio(b):
        r = rows[(b, "haycam+", 128)]
        return f"{'PASS' if r['vs_forward'] >= 0.85 else 'FAIL'} {r['vs_forward']:.2f}×" if r["vs_forward"] else f"n/a {r['error'][:80]}"
    def lat(b):
        r = rows[(b, "haycam+", 1)]
        return f"{'PASS' if r['p50_ms'] < 5 else 'FAIL'} {r['p50_ms']:.2f} ms" if r["p50_ms"] else f"n/a {r['error'][:80]}"
    for label, fn in (("HayCAM+ e2e >= 5000 img/s at batch 128", thr),
                      ("HayCAM+ e2e >= 0.85x bare forward at batch 128", ratio),
                      ("HayCAM+ e2e batch-1 p50 < 5 ms", lat)):
        lines.append(f"| {label} | {cell('torch', fn)} | {cell('onnxruntime', fn)} |")
    lines += ["", (out / "bench_gpu" / "bench.md").read_text()]
mb = out / "map_bench" / "map_bench.md"
if mb.is_file():
    lines += ["", "HayCAM+ map alone (ms per batch):", "", mb.read_text()]
(out / "gpu_summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
}

export OUT PY
export -f diag tests bench map_bench bench_trt summary
stage diag 60 bash -c diag 2>&1 | tee "$OUT/gpu_diag.txt"
stage tests 110 bash -c tests 2>&1 | tee "$OUT/gpu_tests.log"
stage bench 120 bash -c bench
stage map_bench 30 bash -c map_bench
stage bench_trt 60 bash -c bench_trt
stage capacity 60 $PY tools/capacity.py --device cuda --reps 20 --batches 1,8,32,128 --json "$OUT/capacity_gpu.json" 2>&1 | tee "$OUT/capacity_gpu.txt"  # issue 15: ray engine capacity
timeout -k 2 20 bash -c summary || echo "summary failed"
echo "== done in $(( SECONDS - START ))s; results under $OUT"
