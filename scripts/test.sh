#!/usr/bin/env bash
# Run every test: the unit tests and nbval over every chapter notebook (on the `tiny` preset).
# With PYTEST_WORKERS=2, two pytest workers (pytest-xdist), one per core: `--dist loadfile` gives each test file and each notebook
# to one worker whole, so a notebook's cells run in order in one kernel. Caches that both workers may build
# (data/tokens, the waveform .npy files) are built once under a file lock (musiclm_mini/files.py: build_once).
# One thread per worker: the tests and chapters already run torch on one thread, and two workers with
# a BLAS thread pool each would oversubscribe two cores. One worker for now (see below).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUSICLM_PRESET=tiny PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/python -m musiclm_mini.data.synthcaps --preset tiny
# Workers: 1 until the SynthCaps byte-identity flake seen under two workers is explained (issue note, session 9);
# `PYTEST_WORKERS=2 bash scripts/test.sh --dist loadfile` runs on both cores.
OMP_NUM_THREADS=1 .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-0}" --durations=25 tests book "$@"
