#!/usr/bin/env bash
# Issue 14's GPU measurements in one go, each part under its own time limit, every figure as JSON in
# benchmarks/results/ (device name and torch version included). Run from the repository root on one GPU:
#   MAE_CHECKOUT=path/to/facebookresearch/mae benchmarks/gpu_issue14.sh
# The official MAE code is not vendored: clone https://github.com/facebookresearch/mae where the GPU can read it
# (a machine without network: copy it in beside the repository, e.g. to .cache/mae, which git ignores).
set -uo pipefail
PY=${PYTHON:-python}
MAE=$(realpath "${MAE_CHECKOUT:-.cache/mae}")
OUT=$(realpath -m "${OUT_DIR:-benchmarks/results}")
STAMP=$(date -u +%Y%m%dT%H%MZ)
mkdir -p "$OUT"
cd benchmarks || exit 1
$PY -c "import torch, timm, mug; print('torch', torch.__version__, torch.cuda.get_device_name(), 'timm', timm.__version__)" \
  || { echo "this Python lacks torch with CUDA, timm or mug (pip install -e . in the repository)"; exit 1; }

part() {  # name, limit in seconds, command...: runs on when one part fails or times out, and says so
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" || echo "== $name: exit $? (124: over its limit)"
}

# 1. The bare step at ViT-B/16, 224 px, batch 256, bf16: eager, then compiled; the official MAE timed beside our
#    mae objective in alternating rounds (goals: MAE >= 5,000 img/s, MUG >= 4,000, ours >= the official).
part "train step, eager" 150 $PY train_step.py --presets base --objectives mae,mug --batch 256 --steps 20 \
  --warmup 5 --official-mae "$MAE" --rounds 3 --json "$OUT/train-step-eager-$STAMP.json"
part "train step, compiled" 240 $PY train_step.py --presets base --objectives mae,mug --batch 256 --steps 20 \
  --warmup 8 --compile --official-mae "$MAE" --rounds 3 --json "$OUT/train-step-compiled-$STAMP.json"
# 2. MUG-base end to end through the loader (workers' crop and crop_on_device) against the bare step (goal: >= 90%),
#    and the largest batch that fits with its images/s.
part "end to end" 300 $PY end_to_end.py --objective mug --preset base --batch 256 --compile --workers 12 \
  --samples 8192 --steps 80 --skip 30 --rounds 2 --largest-batch --json "$OUT/end-to-end-$STAMP.json"
ls -l "$OUT"
