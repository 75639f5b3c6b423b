#!/usr/bin/env bash
# All tests, with no notebook executed twice on the same parameters, in two streams that share the machine's
# cores (every test and notebook kernel on one thread, OMP_NUM_THREADS=1):
#   - the book (scripts/build_book.sh: every notebook executed on its defaults; the execution cache is reused),
#     its log in _build/book.log, printed when it is done;
#   - meanwhile pytest on everything that does not read the built book: unit tests, every notebook under nbval at
#     its CI parameters (notebooks/conftest.py), papermill runs of the Stable Diffusion branch of notebooks 03-05;
#   - then pytest on the built book (marker built_book: headless Chromium, the API reference page).
# Extra arguments go to both pytest runs (a run that selects no test is not a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/test_book_browser.py needs Debian's chromium (headless, no network)
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=$([ "$(id -u)" = 0 ] || echo sudo)
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 PYDEVD_DISABLE_FILE_VALIDATION=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p _build
# In its own process group where setsid exists, so that ending this script early stops everything it started
if command -v setsid >/dev/null 2>&1; then
  SKIP_SETUP=1 setsid bash scripts/build_book.sh >_build/book.log 2>&1 &
  book=$! group=-$!
else
  SKIP_SETUP=1 bash scripts/build_book.sh >_build/book.log 2>&1 &
  book=$! group=$!
fi
trap 'kill -- $group 2>/dev/null || true' EXIT

pytest_run() {  # pytest exit 5 = no test selected (e.g. by a -k given to this script)
  local rc=0
  .venv/bin/python -m pytest -p no:cacheprovider -q "$@" || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 5 ]
}

status=0
pytest_run tests notebooks --nbval-lax -m "not built_book" "$@" || status=1
book_rc=0
wait $book || book_rc=$?
trap - EXIT
cat _build/book.log
if [ "$book_rc" != 0 ]; then
  echo "scripts/test.sh: the book build failed (exit $book_rc), see above" >&2
  exit 1
fi
pytest_run tests -m built_book "$@" || status=1
exit $status
