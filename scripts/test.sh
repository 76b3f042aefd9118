#!/usr/bin/env bash
# Runs minik's whole check: format, lint, types, then unit, integration and end-to-end tests.
# Pass pytest arguments to narrow it down, e.g. `scripts/test.sh -m unit` or `-k watch`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "==> ruff"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
echo "==> mypy"
.venv/bin/mypy
echo "==> pytest"
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $rc
