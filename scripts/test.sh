#!/usr/bin/env bash
# Install everything the test suite needs on a fresh machine, then run all of it.
# System tools: git (sync tests, gitpython), bubblewrap (the build sandbox tests),
# chromium (the web UI's browser tests drive Debian's chromium through Playwright; no
# browser is downloaded, so never `playwright install`) and PostgreSQL (a throwaway cluster
# per test session; see tests/support/postgres.py).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v git >/dev/null || missing+=(git)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v chromium >/dev/null || missing+=(chromium)
# PostgreSQL: Debian keeps initdb in /usr/lib/postgresql/*/bin, off PATH
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq "${missing[@]}"
fi
python -m pip install -q -e '.[server,test]'
# Three workers on two cores: most of a test's time is spent waiting on real servers and
# clients, not computing. --dist loadfile keeps a module's tests (and its module-scoped
# servers) on one worker; session servers are started once per worker.
python -m pytest -n "${PACKYARD_TEST_WORKERS:-3}" --dist loadfile "$@"
