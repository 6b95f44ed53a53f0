#!/usr/bin/env bash
# Run every test: the unit tests and nbval over every chapter notebook (on the `tiny` preset).
# Two pytest workers (pytest-xdist), one per core: `--dist loadfile` gives each test file and each notebook
# to one worker whole, so a notebook's cells run in order in one kernel. Caches that both workers may build
# (data/tokens, the waveform .npy files) are built once under a file lock (musiclm_mini/files.py: build_once).
# One thread per worker: the tests and chapters already run torch on one thread, and two workers with
# a BLAS thread pool each would oversubscribe two cores. `bash scripts/test.sh -n 0` runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUSICLM_PRESET=tiny PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m musiclm_mini.data.synthcaps --preset tiny
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n 2 --dist loadfile --durations=25 tests book "$@"
