#!/usr/bin/env bash
# Create a private CA and a server certificate for the city's MQTT broker (openssl).
#
#   make-certs.sh OUTDIR SERVER_NAME [EXTRA_NAME_OR_IP ...]
#
# OUTDIR gets ca.key, ca.crt (the CA, valid 10 years; copy ca.crt to every terminal),
# server.key and server.crt (valid 825 days, signed by the CA, with SERVER_NAME and
# every extra name or IPv4 address as subjectAltName). An existing CA is kept, so
# running the script again only renews the server certificate. Keep ca.key offline.
set -euo pipefail

usage() { echo "usage: $0 OUTDIR SERVER_NAME [EXTRA_NAME_OR_IP ...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
outdir=$1; server=$2; shift 2
days_ca=${MANYI_CA_DAYS:-3650}
days_server=${MANYI_SERVER_DAYS:-825}

command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }
mkdir -p "$outdir"
umask 077

san="DNS:$server"
for name in "$@"; do
    if [[ $name =~ ^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$ ]]; then san+=",IP:$name"; else san+=",DNS:$name"; fi
done

if [[ ! -f $outdir/ca.key || ! -f $outdir/ca.crt ]]; then
    openssl req -x509 -new -newkey rsa:3072 -nodes -sha256 -days "$days_ca" \
        -keyout "$outdir/ca.key" -out "$outdir/ca.crt" \
        -subj "/O=manyi/CN=manyi private CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    echo "created CA $outdir/ca.crt"
else
    echo "keeping existing CA $outdir/ca.crt"
fi

ext=$(mktemp)
trap 'rm -f "$ext" "$outdir/server.csr"' EXIT
cat >"$ext" <<CONF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=$san
CONF
openssl req -new -newkey rsa:2048 -nodes -sha256 \
    -keyout "$outdir/server.key" -out "$outdir/server.csr" -subj "/O=manyi/CN=$server" 2>/dev/null
openssl x509 -req -sha256 -days "$days_server" -in "$outdir/server.csr" \
    -CA "$outdir/ca.crt" -CAkey "$outdir/ca.key" -CAcreateserial -CAserial "$outdir/ca.srl" \
    -extfile "$ext" -out "$outdir/server.crt" 2>/dev/null
chmod 644 "$outdir/ca.crt" "$outdir/server.crt"
# mosquitto reads the key after dropping to its own user.
chmod 640 "$outdir/server.key"
if getent group mosquitto >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
    chgrp mosquitto "$outdir/server.key"
fi
echo "created server certificate $outdir/server.crt for $san"
