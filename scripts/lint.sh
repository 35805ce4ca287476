#!/usr/bin/env bash
# The lint gate: ruff (tests included) and mypy with django-stubs (application code), configured in
# pyproject.toml. Exits non-zero on any finding; scripts/test.sh runs it beside the test suites.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
echo "--- ruff check"
.venv/bin/ruff check --no-cache . || status=1
echo "--- mypy"
# The Django plugin loads the settings: a key given here keeps them from writing one into ./var.
DJANGO_SECRET_KEY=${DJANGO_SECRET_KEY:-lint-only} .venv/bin/mypy . || status=1
exit $status
