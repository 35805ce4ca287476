#!/usr/bin/env bash
# One command from a fresh clone to a running server on the embedded default
# (SQLite + local block folder under ./var, administration token generated and printed once).
# Extra arguments go to `manage.py run`, e.g. scripts/start.sh --port 6777 --host 0.0.0.0
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The web console's stylesheets and scripts, compressed, into ./staticfiles (served by the server).
.venv/bin/python manage.py collectstatic --no-input >/dev/null
exec .venv/bin/python manage.py run "$@"
