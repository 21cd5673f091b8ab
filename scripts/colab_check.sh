#!/usr/bin/env bash
# `make colab-check`: the chapters in Colab's environment, offline.
#  1. a clean virtual environment with what Colab preinstalls at Colab's versions
#     (scripts/colab-requirements.txt: ipywidgets 7.7, numpy 2, ...; torch as installed: here the CPU build);
#  2. iai_core installed the way each notebook's first cell installs it in Colab: pip from a git URL
#     (here git+file:// of this checkout, so it installs the *committed* HEAD, without editable mode);
#  3. every chapter and solution notebook executed top to bottom in that environment (scripts/robust.py,
#     so every claim is checked there too) at the seed offsets in COLAB_OFFSETS (default 0; `make test`
#     passes 3, the seed sweep's third offset, so that the sweep and this check share one execution).
#     The committed notebooks are only read.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${COLAB_VENV:-.colab-venv}
PY=${PYTHON:-python3}
start=$(date +%s)
rm -rf "$VENV"
"$PY" -m venv "$VENV"
VENV=$(cd "$VENV" && pwd)
PIP="$VENV/bin/python -m pip"
$PIP install -q --upgrade pip            # Colab's pip is recent; venv's bundled one rejects git+file:// requirements
$PIP install -q --retries 1 --timeout 15 "torch==2.13.0" --extra-index-url https://download.pytorch.org/whl/cpu
$PIP install -q -r scripts/colab-requirements.txt
$PIP install -q "iai_core @ git+file://$PWD"
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 >/dev/null
(cd / && "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import iai_core
print("Colab-like environment:", ", ".join(f"{p} {md.version(p)}" for p in
      ("torch", "numpy", "ipywidgets", "scikit-learn", "scipy", "matplotlib", "tqdm")))
assert "site-packages" in iai_core.__file__, f"iai_core must come from the git install, not {iai_core.__file__}"
PY
)
echo "set-up: $(( $(date +%s) - start )) s"
read -r -a OFFSETS <<< "${COLAB_OFFSETS:-0}"
JUPYTER_PATH="$VENV/share/jupyter" "$VENV/bin/python" scripts/robust.py --offsets "${OFFSETS[@]}" --jobs "${JOBS:-2}" \
  --report _build/colab/report.json
echo "colab-check: $(( $(date +%s) - start )) s"
