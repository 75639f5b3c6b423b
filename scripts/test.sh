#!/usr/bin/env bash
# All tests: set up and build the book (every notebook executed; the execution cache is reused), then unit
# tests, the built book in headless Chromium, and notebooks with nbval (defaults) and papermill (CI-sized).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/test_book_browser.py needs Debian's chromium (headless, no network)
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
bash scripts/build_book.sh          # setup + jupyter-book build --warningiserror --nitpick --keep-going
export HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1
.venv/bin/python -m pytest tests notebooks --nbval-lax -p no:cacheprovider -q "$@"
