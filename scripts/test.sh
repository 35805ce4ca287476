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
# The older clients' scenarios (tests/interop/test_*_versions.py) are mostly client start-ups and waits:
# they run beside the rest, three at a time (pytest-xdist), each worker with its own server and cluster.
versions=(tests/interop/test_client_versions.py tests/interop/test_mixed_versions.py)
.venv/bin/python -m pytest --db=postgresql -p no:cacheprovider "${versions[@]/#/--ignore=}" "$@" \
    >"$logs/postgresql.log" 2>&1 &
pg=$!
.venv/bin/python -m pytest --db=postgresql -p no:cacheprovider -n 3 "${versions[@]}" "$@" >"$logs/clients.log" 2>&1 &
clients=$!
.venv/bin/python -m pytest --db=sqlite -p no:cacheprovider -m "not interop and not browser" "$@" >"$logs/sqlite.log" 2>&1 &
lite=$!
# The lint gate (ruff + mypy, scripts/lint.sh): seconds of work, beside the runs.
scripts/lint.sh >"$logs/lint.log" 2>&1 &
lint=$!
wait $pg; pg_status=$?
wait $lite; lite_status=$?
wait $clients; clients_status=$?
wait $lint; lint_status=$?
# 5 = nothing selected (e.g. `scripts/test.sh -k bootstrap`)
[ $clients_status -eq 5 ] && clients_status=0

echo "===== Lint: ruff + mypy (exit $lint_status) ====="
cat "$logs/lint.log"
echo "===== SQLite run (exit $lite_status) ====="
cat "$logs/sqlite.log"
echo "===== PostgreSQL run, interop included (exit $pg_status) ====="
cat "$logs/postgresql.log"
echo "===== Older clients, PostgreSQL (exit $clients_status) ====="
cat "$logs/clients.log"
[ $pg_status -eq 0 ] && [ $lite_status -eq 0 ] && [ $clients_status -eq 0 ] && [ $lint_status -eq 0 ]
