#!/usr/bin/env bash
# Train every component of a preset on one GPU, in order, resumably (Chapter 11).
#
#   bash scripts/train_all.sh --preset colab            # data, codec, w2v-BERT, k-means, MuLan, three stages
#   bash scripts/train_all.sh --preset colab --dry-run  # print the commands only
#
# Each step writes runs/<component>-<preset>/. Run the script again after an interruption (a Colab
# session ends): a step whose run folder holds a checkpoint continues it with --resume, and a finished
# step resumes to its last step at once. k-means is fitted in one go, so it is skipped once it exists.
# Later steps read the tokenizers trained here (--checkpoints runs), not the shipped tiny ones.
# Estimated hours of each step on a T4 and an A100: Chapter 11 (`musiclm_mini.scale.recipe_estimates`).
set -euo pipefail
cd "$(dirname "$0")/.."

PRESET=colab
DRY=0
while [ $# -gt 0 ]; do
  case "$1" in
    --preset) PRESET="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    *) echo "usage: bash scripts/train_all.sh [--preset tiny|colab|paper] [--dry-run]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python

run() {  # print, then run unless --dry-run
  echo "+ $*"
  [ "$DRY" = 1 ] || "$@"
}

train() {  # train COMPONENT [flags...]: resume when its run folder already holds a checkpoint
  local component="$1"; shift
  local out="runs/${component}-${PRESET}"
  local resume=()
  if [ -f "$out/model.safetensors" ]; then
    if [ "$component" = kmeans ]; then echo "= $out exists (k-means is fitted in one go): skipped"; return; fi
    resume=(--resume)
  fi
  run "$PY" -m musiclm_mini.train "$component" --preset "$PRESET" --out "$out" "${resume[@]}" "$@"
}

run "$PY" -m musiclm_mini.data.synthcaps --preset "$PRESET"   # 1. SynthCaps (CPU; skips clips it has)
train codec                                                  # 2. SoundStream (Chapter 3)
train w2v-bert                                               # 3. w2v-BERT (Chapter 4) ...
train kmeans --checkpoints runs                              #    ... and its k-means semantic tokens
train mulan                                                  # 4. MuLan (Chapter 5)
for stage in semantic-stage coarse-stage fine-stage; do     # 5. the three stages (Chapter 6)
  train "$stage" --checkpoints runs
done
echo "done: runs/*-${PRESET}. Ship with: $PY -m musiclm_mini.train ship <component> --preset ${PRESET}"
