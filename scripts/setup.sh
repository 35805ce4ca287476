#!/usr/bin/env bash
# Installs what the server and its tests need on a Debian machine; safe to run again.
#   scripts/setup.sh           system packages + the server's virtualenv (.venv)
#   scripts/setup.sh --tests   also the test services and the reference client (parsec-cloud 2.17.0)
set -euo pipefail
cd "$(dirname "$0")/.."

want_tests=false
[ "${1:-}" = "--tests" ] && want_tests=true

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

packages=()
if $want_tests; then
    command -v pg_ctlcluster >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || packages+=(postgresql)
    command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
    # The reference client's FUSE bindings load libfuse2 at import time.
    # Not `grep -q`: with pipefail, its early exit can kill the writer (SIGPIPE) and fail the test.
    ldconfig -p | grep 'libfuse.so.2' >/dev/null || packages+=(libfuse2)
    # One-node OpenStack Swift (tempauth keeps its tokens in memcached) for the Swift blockstore tests.
    command -v swift-object-server >/dev/null 2>&1 && command -v swift-proxy-server >/dev/null 2>&1 \
        && command -v swift-account-server >/dev/null 2>&1 && command -v swift-container-server >/dev/null 2>&1 \
        || packages+=(swift swift-proxy swift-account swift-container swift-object)
    command -v memcached >/dev/null 2>&1 || packages+=(memcached)
    # nginx: the deploy/nginx.conf example is checked with `nginx -t`.
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx-light)

    # The web console's browser tests (tests/browser): headless Chromium driven by selenium.
    command -v chromium >/dev/null 2>&1 || packages+=(chromium)
    command -v chromedriver >/dev/null 2>&1 || packages+=(chromium-driver)
fi
# msgfmt, to compile the French catalogue of the HTML pages (locale/).
command -v msgfmt >/dev/null 2>&1 || packages+=(gettext)
if [ ${#packages[@]} -gt 0 ]; then
    echo "Installing Debian packages: ${packages[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

python=${PYTHON:-python3.11}
command -v "$python" >/dev/null 2>&1 || python=python3
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
# The HTML pages' translations (locale/*/LC_MESSAGES/django.mo, not kept in git).
.venv/bin/django-admin compilemessages --ignore '.venv*' >/dev/null

if $want_tests; then
    ref=${PARSEC_REF_VENV:-$PWD/.venv-ref}
    if [ ! -x "$ref/bin/parsec" ]; then
        echo "Installing the reference client parsec-cloud 2.17.0 (Python 3.9) into $ref"
        if command -v pyenv >/dev/null 2>&1 && pyenv prefix 3.9.18 >/dev/null 2>&1; then
            PYENV_VERSION=3.9.18 pyenv exec python -m venv "$ref"
        else
            python3.9 -m venv "$ref"
        fi
        "$ref/bin/pip" install -q --disable-pip-version-check --upgrade pip
        "$ref/bin/pip" install -q --disable-pip-version-check "parsec-cloud[core]==2.17.0"
    fi
    # Sequester (issue 13): the interop test extracts our realm export with the reference's own
    # `parsec backend sequester extract_realm_export`, which needs the package's backend extra.
    if ! "$ref/bin/python" -c "import jinja2, triopg, parsec.backend.cli" >/dev/null 2>&1; then
        "$ref/bin/pip" install -q --disable-pip-version-check "parsec-cloud[core,backend]==2.17.0"
    fi
fi

# --- Older official clients (2.0.0 ... 2.16.3) for tests/interop/test_client_versions.py ---------
# One venv each under .venv-clients/ (or $PARSEC_CLIENTS_DIR), installed all at once; 2.0.0 with
# Python 3.8, the others 3.9 (pyenv when present). Also patches oscrypto's OpenSSL version regex
# (see tests/interop/oldclients.py) and checks that each CLI imports.
if $want_tests; then
    .venv/bin/python -m tests.interop.oldclients install
fi
