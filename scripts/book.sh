#!/usr/bin/env bash
# Build the book: set up, make the tiny SynthCaps data set if missing, execute every chapter on the
# `tiny` preset and render HTML into _build/html, then check the pages (scripts/check_book.py).
# Executed notebooks are cached in _build/.jupyter_cache, keyed by their code cells: after editing one
# chapter, a rebuild re-executes only that chapter. `bash scripts/book.sh --fresh` re-executes every
# chapter (do so after changing the package or the shipped weights, which the cache cannot see).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUSICLM_PRESET=${MUSICLM_PRESET:-tiny} PYTHONHASHSEED=0 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
if [ "${1:-}" = "--fresh" ]; then rm -rf _build/.jupyter_cache; fi
bash scripts/offline_assets.sh
# The page check opens the book in a headless browser; install Debian's chromium when we can.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "book: installing chromium for the page check"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || echo "book: chromium could not be installed" >&2
fi
.venv/bin/python -m musiclm_mini.data.synthcaps --preset "$MUSICLM_PRESET"
rm -rf _build/html
# No --keep-going: a chapter that fails to execute fails the build.
.venv/bin/jupyter-book build .
.venv/bin/python scripts/check_book.py _build/html
echo "book: open _build/html/index.html"
