#!/usr/bin/env bash
# A custom certificate authority and a server certificate signed by it, for a test or private
# deployment (production: use a certificate from a CA your users' machines already trust).
#
#   deploy/make-ca.sh [OUTPUT_DIR] [HOSTNAME...]
#
# OUTPUT_DIR (default deploy/tls) receives:
#   custom-ca.key, custom-ca.crt         the CA; give custom-ca.crt to the clients (SSL_CAFILE=...)
#   parsec-server.key, parsec-server.crt the server's key and certificate (then the CA: a full chain)
# HOSTNAMEs (default: localhost) are the names the clients use in parsec://HOSTNAME:PORT; 127.0.0.1,
# ::1 and parsec-server (the compose service) are always added. An existing CA is reused, so a new
# server certificate keeps working with the clients that already trust it.
set -euo pipefail

out=${1:-$(dirname "$0")/tls}
shift || true
[ $# -gt 0 ] || set -- localhost
days=${CERT_DAYS:-825}
# The image's `parsec` group (Dockerfile), so the container can read the key without it being world-readable.
key_group=${PARSEC_KEY_GID:-1234}

mkdir -p "$out"
cd "$out"
umask 077

if [ ! -s custom-ca.key ] || [ ! -s custom-ca.crt ]; then
    openssl req -x509 -newkey rsa:3072 -sha256 -nodes -days 3650 \
        -keyout custom-ca.key -out custom-ca.crt \
        -subj "/O=Parsec test deployment/CN=Parsec custom CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi

san="DNS:parsec-server,IP:127.0.0.1,IP:::1"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then san="IP:$name,$san"; else san="DNS:$name,$san"; fi
done

openssl req -newkey rsa:3072 -sha256 -nodes -keyout parsec-server.key -out parsec-server.csr \
    -subj "/O=Parsec test deployment/CN=$1" 2>/dev/null
openssl x509 -req -in parsec-server.csr -CA custom-ca.crt -CAkey custom-ca.key -CAcreateserial \
    -days "$days" -sha256 -out parsec-server.leaf.crt \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' "$san") \
    2>/dev/null
cat parsec-server.leaf.crt custom-ca.crt > parsec-server.crt
rm -f parsec-server.csr parsec-server.leaf.crt custom-ca.srl

chmod 644 custom-ca.crt parsec-server.crt
chmod 640 parsec-server.key
chgrp "$key_group" parsec-server.key 2>/dev/null \
    || echo "note: could not give parsec-server.key to group $key_group; as root: chgrp $key_group $out/parsec-server.key" >&2
echo "CA: $out/custom-ca.crt  server: $out/parsec-server.{crt,key}  names: $san"
