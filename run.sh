#!/usr/bin/env bash
# One entry point for the README's commands. Creates ./.venv (Python >= 3.10) on first use,
# installs tfrestore into it, then runs:
#   bash run.sh train [args]   the main job: a short denoising run on embedded images
#   bash run.sh test  [args]   the default test suite (slow tests excluded)
#   bash run.sh test-slow      the slow tests only
set -euo pipefail
cd "$(dirname "$0")"
VENV="${TFRESTORE_VENV:-.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
"$VENV/bin/python" -m pip install -q -e ".[all]"
# Shared reference material (weights, data) when it sits beside the checkout.
if [ -z "${TFRESTORE_WEIGHTS_DIR:-}" ] && [ -d ../shared/weights ]; then
  export TFRESTORE_WEIGHTS_DIR="$(cd ../shared/weights && pwd)"
fi
if [ -z "${TFRESTORE_DATA_DIR:-}" ] && [ -d ../shared/data ]; then
  export TFRESTORE_DATA_DIR="$(cd ../shared/data && pwd)"
fi
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cmd="${1:-test}"
shift || true
case "$cmd" in
  train)     exec "$VENV/bin/python" train/denoise.py "$@" ;;
  test)      exec "$VENV/bin/python" -m pytest -m "not slow" "$@" ;;
  test-slow) exec "$VENV/bin/python" -m pytest -m slow "$@" ;;
  *) echo "usage: bash run.sh {train|test|test-slow} [args]" >&2; exit 2 ;;
esac
