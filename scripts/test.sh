#!/usr/bin/env bash
# One command from a fresh clone to the whole test suite: installs what is needed, then runs the suite
# on PostgreSQL (interop with the official 2.17 client and the browser tests included) and on SQLite, in parallel.
set -uo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests || exit 1
export PARSEC_REF_VENV=${PARSEC_REF_VENV:-$PWD/.venv-ref}

# Logs stay in the checkout (.test-logs/), where nothing else cleans them up mid-run.
logs=$PWD/.test-logs
rm -rf "$logs" && mkdir -p "$logs"
.venv/bin/python -m pytest --db=postgresql -p no:cacheprovider "$@" >"$logs/postgresql.log" 2>&1 &
pg=$!
.venv/bin/python -m pytest --db=sqlite -p no:cacheprovider -m "not interop and not browser" "$@" >"$logs/sqlite.log" 2>&1 &
lite=$!
wait $pg; pg_status=$?
wait $lite; lite_status=$?

echo "===== SQLite run (exit $lite_status) ====="
cat "$logs/sqlite.log"
echo "===== PostgreSQL run, interop included (exit $pg_status) ====="
cat "$logs/postgresql.log"
[ $pg_status -eq 0 ] && [ $lite_status -eq 0 ]
