#!/usr/bin/env bash
# All tests: set up, unit tests, notebooks with nbval (defaults) and papermill (CI-sized parameters).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
.venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider -q "$@"
