#!/usr/bin/env bash
# One-time set-up, safe to run again: Debian packages (when missing and possible),
# a virtual environment in .venv with the pinned toolchain, and this package.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
ldconfig -p 2>/dev/null | grep -q 'libfluidsynth\.so\.3' || need_apt+=(libfluidsynth3)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian packages: ${need_apt[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing system packages: ${need_apt[*]}" >&2
    echo "setup: install them yourself, e.g. 'sudo apt-get install ${need_apt[*]}'" >&2
    echo "setup: (audio decoding needs ffmpeg; MIDI rendering needs libfluidsynth3)" >&2
    exit 1
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.setup-stamp
want=$(cat requirements.txt requirements-dev.txt constraints.txt pyproject.toml | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first time: a few minutes)"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r requirements-dev.txt -c constraints.txt
  .venv/bin/pip install -q --no-deps basic-pitch -c constraints.txt  # its metadata wants TensorFlow; ONNX suffices
  .venv/bin/pip install -q --no-deps -e .
  echo "$want" >"$stamp"
fi
