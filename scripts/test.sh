#!/usr/bin/env bash
# Run every test: unit tests, then nbval over every chapter notebook (on the `tiny` preset).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUSICLM_PRESET=tiny PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m musiclm_mini.data.synthcaps --preset tiny
.venv/bin/python -m pytest --durations=25 tests book "$@"
