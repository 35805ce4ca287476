#!/usr/bin/env bash
# The lint gate: ruff (tests included) and mypy with django-stubs (application code), configured in
# pyproject.toml. Exits non-zero on any finding; scripts/test.sh runs it beside the test suites.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
echo "--- ruff check"
.venv/bin/ruff check --no-cache . || status=1
echo "--- mypy"
.venv/bin/mypy . || status=1
exit $status
