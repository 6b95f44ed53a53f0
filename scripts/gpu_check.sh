#!/usr/bin/env bash
# On a CUDA GPU: a few hundred steps of each `colab` part and a few steps of each `paper` stage (Chapter 11).
# Prints tokens/s, peak memory beside the calculator's estimate, and the loss going down. Exits 1, saying
# so, on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
exec timeout 600 "$PY" scripts/gpu_check.py
