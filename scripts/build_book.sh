#!/usr/bin/env bash
# The main job: set up, then build the Jupyter Book with every notebook executed on its offline defaults.
# Fails (non-zero exit) on any notebook error or Sphinx warning. SKIP_SETUP=1: the caller has run scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_SETUP:-0}" = 1 ] || bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
# --all re-reads every page (notebook outputs still come from the execution cache), so a warning or a failed
# notebook from an earlier run fails this run too instead of hiding in Sphinx's incremental build.
.venv/bin/jupyter-book build . --all --warningiserror --nitpick --keep-going --builder html
echo "Book built: $(pwd)/_build/html/index.html"
