#!/usr/bin/env bash
# The real data dtx's scripts and docs use, in one command: the BIG-bench task files of Disfl-QA
# (extractive QA, SQuAD 2.0 style) and VitaminC (claim/evidence classification), taken unchanged
# out of the `bigbench==1.0.0` source archive on PyPI and gzipped:
#
#   DIR/disfl_qa.task.json.gz   <- bigbench/benchmark_tasks/disfl_qa/task.json
#   DIR/vitaminc.task.json.gz   <- bigbench/benchmark_tasks/vitaminc_fact_verification/task.json
#
#   bash scripts/get_data.sh          # DIR = data/ in the repository (what scripts/*.sh read)
#   bash scripts/get_data.sh DIR      # anywhere else
#   BIGBENCH_SDIST=bigbench-1.0.0.tar.gz bash scripts/get_data.sh   # from an archive already here (offline)
#
# The archive (358 MB) is downloaded to a temporary directory, checked against its sha256, and
# removed afterwards; each task file is checked against its sha256 before it is moved into place.
# Safe to re-run: files already present and intact are kept, nothing is downloaded then.
# Licences: BIG-bench is Apache-2.0; Disfl-QA is CC BY 4.0, VitaminC CC BY-SA 3.0. The files carry
# BIG-bench's canary string; keep it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DIR=${1:-$REPO/data}
PY=${DTX_PYTHON:-$([ -x "$REPO/.venv/bin/python" ] && echo "$REPO/.venv/bin/python" || echo python3)}
SDIST_SHA256=1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2
TASKS=(disfl_qa:disfl_qa vitaminc:vitaminc_fact_verification)  # our name : BIG-bench task directory
declare -A SHA256=(  # of the uncompressed task.json
  [disfl_qa]=baff19410992adcf14e5bb2e1ea652e7589a8e11e8c314a00225110e104e2824
  [vitaminc]=10f83da50374701fc7ce69162a7a167b14e1a86351201aa8bf14b56fa0a3214f
)

intact() { [ -f "$1" ] && [ "$(gzip -dc "$1" 2>/dev/null | sha256sum | cut -d' ' -f1)" = "$2" ]; }

todo=()
for t in "${TASKS[@]}"; do
  name=${t%%:*}
  if intact "$DIR/$name.task.json.gz" "${SHA256[$name]}"; then
    echo "get_data: $DIR/$name.task.json.gz is present and intact"
  else
    todo+=("$t")
  fi
done
[ ${#todo[@]} -eq 0 ] && exit 0

mkdir -p "$DIR"
TMP=$(mktemp -d "$DIR/.get_data.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
if [ -n "${BIGBENCH_SDIST:-}" ]; then
  SDIST=$BIGBENCH_SDIST
else
  echo "get_data: downloading the bigbench==1.0.0 source archive from PyPI (358 MB)"
  "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: bigbench==1.0.0 -d "$TMP"
  SDIST=$TMP/bigbench-1.0.0.tar.gz
fi
got=$(sha256sum "$SDIST" | cut -d' ' -f1)
[ "$got" = "$SDIST_SHA256" ] || { echo "get_data: $SDIST has sha256 $got, expected $SDIST_SHA256" >&2; exit 1; }

members=()
for t in "${todo[@]}"; do members+=("bigbench-1.0.0/bigbench/benchmark_tasks/${t#*:}/task.json"); done
tar -xzf "$SDIST" -C "$TMP" "${members[@]}"  # keeps each file's mtime, which gzip records
for t in "${todo[@]}"; do
  name=${t%%:*}
  # gzip -9 of the file named task.json: byte for byte the files dtx was developed with
  (cd "$TMP/bigbench-1.0.0/bigbench/benchmark_tasks/${t#*:}" && gzip -9 -c task.json) > "$TMP/$name.task.json.gz"
  intact "$TMP/$name.task.json.gz" "${SHA256[$name]}" || { echo "get_data: $name: task.json is not the expected file" >&2; exit 1; }
  mv -f "$TMP/$name.task.json.gz" "$DIR/$name.task.json.gz"
  echo "get_data: wrote $DIR/$name.task.json.gz"
done
