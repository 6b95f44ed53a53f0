#!/usr/bin/env bash
# Build the book: set up, make the tiny SynthCaps data set if missing, execute every chapter on the
# `tiny` preset and render HTML into _build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUSICLM_PRESET=${MUSICLM_PRESET:-tiny} PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m musiclm_mini.data.synthcaps --preset "$MUSICLM_PRESET"
rm -rf _build/html
.venv/bin/jupyter-book build . --keep-going
test -f _build/html/index.html
echo "book: open _build/html/index.html"
