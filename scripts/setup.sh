#!/usr/bin/env bash
# Set up everything the book and its tests need, in ./.venv. Idempotent: a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # The CPU build of torch: a bare `torch` from PyPI is a multi-GB CUDA build on Linux.
  # (--retries/--timeout: where that index is unreachable, pip moves on quickly to the others)
  $PIP install -q --retries 1 --timeout 15 "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
fi
$PIP install -q -r requirements.txt
$PIP install -q --no-deps -e .
.venv/bin/python -m ipykernel install --sys-prefix --name python3 >/dev/null
.venv/bin/python scripts/fetch_mathjax.py
