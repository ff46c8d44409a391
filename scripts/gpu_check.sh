#!/usr/bin/env bash
# The GPU figures in one run of one script (issue 22), with the GPU machine's own python3 (no .venv,
# dtx not installed: it runs from this tree; nothing is installed, nothing is downloaded).
#
#   bash scripts/gpu_check.sh OUT_DIR               # on one H100/H200: steps budgeted at 345 s (not yet run on a GPU)
#   bash scripts/gpu_check.sh --rehearse OUT_DIR    # the same steps on the CPU, tiny model, a few queries
#
# Steps, in order of value; each writes its JSON into OUT_DIR the moment it ends (the bench steps
# after each split), each is guarded by `timeout`, each prints its seconds:
#   1. the card's bench: BERT-base shape, --split 5,9 -K 20 --seq-q 32 --seq-p 150, fp16, torch with
#      CUDA graphs, and the coupled model in fp32 beside it            -> bench-torch-graphs.json
#   2. the AOTInductor fp16 engine, same shapes                        -> bench-aoti.json
#   3. torch eager fp16, same shapes                                   -> bench-torch-eager.json
#   4. the bf16 matrix-multiply peak of this card                      -> matmul-peak.json
#   5. the GPU-marked tests (only where python3 can import pytest)     -> gpu-tests.xml
#   6. if time is left: INT8 (W8A8 dynamic on torch._int_mm, no TensorRT) -> bench-int8.json
#   then the summary against the bars                                  -> summary.json (+ gpu_check.log)
# Each split is decoupled and exported once (scripts/gpu_bench.py keeps the model, exports and
# engines in $DTX_GPU_WORK, default /tmp/dtx-gpu-check-work), so steps 2, 3, 6 and a rerun reuse them.
# At most 8 files land in OUT_DIR. A step that fails or times out does not stop the later ones, but
# the script then exits non-zero: a broken GPU path fails loudly, it is never a skip.
#
# Environment: DTX_PYTHON (default python3), DTX_GPU_WORK, DTX_GPU_BUDGET_S (total seconds for the
# steps, default 345), DTX_REHEARSE_AOTI=1 (the rehearsal also compiles AOTInductor CPU packages:
# minutes on 2 cores, so it is off by default).
set -uo pipefail

REHEARSE=0
if [[ "${1:-}" == "--rehearse" ]]; then REHEARSE=1; shift; fi
if [[ $# -ne 1 ]]; then
  echo "usage: bash scripts/gpu_check.sh [--rehearse] OUT_DIR" >&2
  exit 2
fi
ROOT=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
cd "$ROOT"
PY=${DTX_PYTHON:-python3}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TRANSFORMERS_VERBOSITY=error
exec > >(tee -a "$OUT/gpu_check.log") 2>&1

SPLITS=5,9 K=20 SEQ_Q=32 SEQ_P=150
if (( REHEARSE )); then
  ARCH=bert-rehearsal DEVICE=cpu PREC=fp32 RUNS=3 WARMUP=1 DRIFT_PAIRS=8
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # a shared 2-core CI machine: no spinning thread pools
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/dtx-gpu-rehearsal.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  PEAK_ARGS=(--device cpu --sizes 128,256 --repeats 3)
  BUDGET=${DTX_GPU_BUDGET_S:-900}
  CAP_GRAPHS=400 CAP_AOTI=600 CAP_EAGER=120 CAP_PEAK=60 CAP_TESTS=120 CAP_INT8=120 MIN_INT8=10
else
  ARCH=bert-base DEVICE=cuda PREC=fp16 RUNS=50 WARMUP=5 DRIFT_PAIRS=64
  WORK=${DTX_GPU_WORK:-/tmp/dtx-gpu-check-work}
  PEAK_ARGS=(--device cuda)
  BUDGET=${DTX_GPU_BUDGET_S:-345}
  CAP_GRAPHS=150 CAP_AOTI=150 CAP_EAGER=45 CAP_PEAK=30 CAP_TESTS=100 CAP_INT8=60 MIN_INT8=40
fi
mkdir -p "$WORK"
STEPS="$WORK/steps.tsv"
: > "$STEPS"
START=$(date +%s.%N)
elapsed() { awk -v a="$START" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

echo "gpu_check.sh $( ((REHEARSE)) && echo "--rehearse (CPU, $ARCH, $RUNS queries)" || echo "(GPU)") -> $OUT; work $WORK; $(date -u +%FT%TZ)"
echo "python: $(command -v "$PY") ($("$PY" -V 2>&1))"
"$PY" - "$DEVICE" <<'EOF'
import importlib, sys
need = ["torch", "transformers", "tokenizers", "safetensors", "onnx", "onnxruntime", "onnxscript", "click", "numpy", "tqdm"]
missing, versions = [], {}
for name in need:
    try:
        versions[name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as e:  # noqa: BLE001 - any failure to import is the same answer: not usable here
        missing.append(f"{name} ({type(e).__name__})")
print("modules: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
if missing:
    sys.exit("gpu_check.sh: the bench path needs " + ", ".join(missing) + " and this python cannot import it")
import torch
if sys.argv[1] == "cuda":
    if not torch.cuda.is_available():
        sys.exit("gpu_check.sh: torch sees no CUDA GPU on this machine (use --rehearse for the CPU rehearsal)")
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, CUDA {torch.version.cuda}")
EOF
rc=$?
if (( rc != 0 )); then echo "gpu_check.sh: preflight failed" >&2; exit 1; fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader || true
fi

FAILED=0
# step NAME CAP_SECONDS COMMAND...: run under `timeout` within what is left of the budget; one line of outcome
step() {
  local name=$1 cap=$2 left limit t0 rc secs status
  shift 2
  left=$(awk -v b="$BUDGET" -v e="$(elapsed)" 'BEGIN { printf "%d", b - e }')
  limit=$(( cap < left ? cap : left ))
  if (( limit < 5 )); then
    echo "step $name: NOT RUN: the ${BUDGET} s budget is spent"
    printf '%s\t%s\t%s\t%s\n' "$name" "not run: no time left" "-" "0" >> "$STEPS"
    FAILED=1
    return
  fi
  echo "=== step $name (timeout ${limit} s, at $(elapsed) s)"
  t0=$(date +%s.%N)
  timeout --kill-after=15 "$limit" "$@"
  rc=$?
  secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  rm -f "$OUT"/*.tmp
  case $rc in
    0) status=ok ;;
    124|137) status="TIMED OUT after ${limit} s"; FAILED=1 ;;
    *) status="FAILED (exit $rc)"; FAILED=1 ;;
  esac
  echo "step $name: $status in $secs s"
  printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$secs" "$limit" >> "$STEPS"
}
skip() {  # skip NAME REASON: a step that cannot run here, said so (the summary carries the reason)
  echo "step $1: SKIPPED: $2"
  printf '%s\t%s\t%s\t%s\n' "$1" "skipped: $2" "0" "0" >> "$STEPS"
}

BENCH=("$PY" scripts/gpu_bench.py --work "$WORK" --arch "$ARCH" --splits "$SPLITS" -K "$K" --seq-q "$SEQ_Q" --seq-p "$SEQ_P"
       --device "$DEVICE" --precision "$PREC" --runs "$RUNS" --warmup "$WARMUP" --drift-pairs "$DRIFT_PAIRS")

# 1. the card's bench (also builds each split's export, once, for every later step)
step torch-graphs "$CAP_GRAPHS" "${BENCH[@]}" --mode graphs --fp32-baseline --json "$OUT/bench-torch-graphs.json"
# 2. AOTInductor (split 9 first: its 9/3 row carries both bars if the step is cut short)
if (( REHEARSE )) && [[ "${DTX_REHEARSE_AOTI:-0}" != 1 ]]; then
  skip aoti "rehearsal: AOTInductor compiles C++ for minutes on a CPU (DTX_REHEARSE_AOTI=1 runs it)"
else
  step aoti "$CAP_AOTI" "${BENCH[@]}" --splits 9,5 --mode aoti --json "$OUT/bench-aoti.json"
fi
# 3. torch eager (the torch engine of step 1, loaded without CUDA graphs)
step torch-eager "$CAP_EAGER" "${BENCH[@]}" --mode eager --json "$OUT/bench-torch-eager.json"
# 4. the measured peak the achieved TFLOP/s are read against
step matmul-peak "$CAP_PEAK" "$PY" scripts/matmul_peak.py "${PEAK_ARGS[@]}" --json "$OUT/matmul-peak.json"
# 5. the GPU-marked tests (on CPU they skip: the rehearsal proves the command and the report)
if "$PY" -c "import pytest" >/dev/null 2>&1; then
  step tests "$CAP_TESTS" "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs --junitxml="$OUT/gpu-tests.xml" \
    tests/test_engines.py tests/test_training_loop.py tests/test_qa.py
else
  skip tests "pytest is not importable by $PY on this machine"
fi
# 6. INT8 without TensorRT, if time is left
left=$(awk -v b="$BUDGET" -v e="$(elapsed)" 'BEGIN { printf "%d", b - e }')
if (( left >= MIN_INT8 )); then
  step int8 "$CAP_INT8" "${BENCH[@]}" --mode int8 --json "$OUT/bench-int8.json"
else
  skip int8 "no time left (${left} s of the ${BUDGET} s budget)"
fi

echo "=== summary (at $(elapsed) s)"
SUMMARY=("$PY" scripts/gpu_summary.py "$OUT" --steps "$STEPS")
(( REHEARSE )) && SUMMARY+=(--rehearsal)
"${SUMMARY[@]}" || FAILED=1
echo "gpu_check.sh: done in $(elapsed) s; $(ls "$OUT" | wc -l) files in $OUT"
if (( FAILED )); then
  echo "gpu_check.sh: FAILED: a step broke or did not finish (see above)" >&2
  exit 1
fi
