#!/usr/bin/env bash
# The GPU half, in one command, on a machine with a CUDA GPU (one H100/H200: under 8 minutes):
#   1. the GPU-marked tests, which must run there (a skip other than TensorRT's absence is a failure);
#   2. the bf16 matrix-multiply peak of this card;
#   3. `dtx bench --arch bert-base --split 5,9 -K 20 --seq-q 32 --seq-p 150`, coupled vs decoupled, for
#      torch fp16 with and without CUDA graphs and for the AOTInductor fp16 engine;
#   4. a summary: speed-ups against the bars, latency, achieved TFLOP/s against the measured peak.
# Every result is JSON in OUT (default runs/gpu-check). Any failure stops the script with a non-zero exit.
#
#   bash scripts/gpu_check.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu-check}
PY=${DTX_PYTHON:-.venv/bin/python}
DTX=${DTX_CLI:-.venv/bin/dtx}
mkdir -p "$OUT"
$PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check.sh: torch sees no CUDA GPU on this machine')"
$PY -c "import torch; print(torch.cuda.get_device_name(), torch.__version__)" | tee "$OUT/device.txt"

# 1. GPU tests: run, not skipped (TensorRT is not installable on these machines: its skip is the one allowed)
$PY -m pytest -q -m gpu tests -rs --junitxml="$OUT/gpu-tests.xml" | tee "$OUT/gpu-tests.txt"
if grep -E "^SKIPPED" "$OUT/gpu-tests.txt" | grep -v "TensorRT is not installed"; then
  echo "gpu_check.sh: a GPU test was skipped on a GPU machine" >&2
  exit 1
fi

# 2. the measured peak the achieved TFLOP/s are read against
$PY scripts/matmul_peak.py --device cuda --json "$OUT/matmul-peak.json"

# 3. coupled vs decoupled at K = 20, BERT-base shape (random weights: latency does not depend on them)
B="--arch bert-base --split 5,9 -K 20 --seq-q 32 --seq-p 150 --runs 50 --warmup 5 --device cuda --precision fp16"
$DTX bench $B --backend torch --cuda-graphs --json "$OUT/bench-torch-fp16-cuda-graphs.json"
$DTX bench $B --backend torch --no-cuda-graphs --json "$OUT/bench-torch-fp16-eager.json"
$DTX bench $B --backend aoti --no-fp32-baseline --json "$OUT/bench-aoti-fp16.json"  # compiling costs minutes: no second (fp32) engine

# 4. the table and the bars
$PY scripts/gpu_summary.py "$OUT"
