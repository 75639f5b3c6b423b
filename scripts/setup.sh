#!/usr/bin/env bash
# Create .venv (Python >= 3.10) and install diffrep-lite with the book and test extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch first, pinned: on the project machines torch==2.13.0 is the local CPU wheel (a bare range would pick a
# larger CUDA build); elsewhere fall back to any torch the package's range allows.
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/python -m pip install -q "torch==2.13.0" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch>=2.2,<2.15" 2>&1 | grep -v "^WARNING: Location" || true
fi
.venv/bin/python -m pip install -q -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import diffrep_lite, torch, diffusers, jupyter_book; print('diffrep-lite', diffrep_lite.__version__, '| torch', torch.__version__)"
