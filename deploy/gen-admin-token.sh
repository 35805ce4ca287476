#!/usr/bin/env bash
# Writes deploy/parsec-admin-token.env with a new random administration token (kept out of git).
#   deploy/gen-admin-token.sh [OUTPUT_FILE]
set -euo pipefail
out=${1:-$(dirname "$0")/parsec-admin-token.env}
umask 077
printf '# Bearer token of the administration API (create organizations...). Keep it secret.\nPARSEC_ADMINISTRATION_TOKEN=%s\n' \
    "$(openssl rand -hex 32)" > "$out"
echo "Administration token written to $out"
