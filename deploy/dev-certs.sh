#!/bin/sh
# deploy/dev-certs.sh -- a development CA, a server key pair it signs and a bootstrap admin
# token, for compose.yaml (its one-shot `certs` service runs this) or a server of your own.
#
#   deploy/dev-certs.sh DIR                # creates what is missing, keeps what is there
#   ROTATE=tls deploy/dev-certs.sh DIR     # a new server key pair (same CA): served within 2 s
#   ROTATE=token deploy/dev-certs.sh DIR   # a new admin token: read at start, restart the server
#   ROTATE=all deploy/dev-certs.sh DIR     # a new CA too: clients need the new DIR/tls/ca.crt
#
# Writes the files as a Kubernetes TLS Secret and a token Secret mounted as volumes would:
#   DIR/tls/ca.crt          the CA clients trust (--ca-cert, EVENTBUS_CA_CERT)
#   DIR/tls/tls.crt         server certificate for eventbus, localhost and 127.0.0.1 (EVENTBUS_TLS_CERT)
#   DIR/tls/tls.key         its key (EVENTBUS_TLS_KEY)
#   DIR/admin-token/token   the bootstrap admin token (EVENTBUS_ADMIN_TOKEN_FILE)
# The CA key stays in ${CA_DIR:-DIR/ca}/ca.key. Needs only sh and openssl (the postgres:16 image has both).
# Run as root (as compose does), it gives the key and the token (mode 0400) to uid/gid
# ${OWNER:-65532}, the image's user. For development only: in production the key pair comes
# from your PKI or cert-manager.
set -eu

dir=${1:?usage: dev-certs.sh DIR}
rotate=${ROTATE:-}
owner=${OWNER:-65532}
ca=${CA_DIR:-$dir/ca}
# Extra subject alternative names of the server certificate, e.g. SANS=DNS:bus.example.com.
sans="DNS:eventbus,DNS:localhost,IP:127.0.0.1${SANS:+,$SANS}"

case $rotate in
'' | tls | token | all) ;;
*)
    echo "dev-certs.sh: ROTATE must be tls, token or all, not '$rotate'" >&2
    exit 2
    ;;
esac

umask 077
mkdir -p "$ca" "$dir/tls" "$dir/admin-token"
chmod 0755 "$dir" "$dir/tls" "$dir/admin-token"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# put SRC DST MODE: gives SRC its mode (and, run as root, a 0400 secret to the image's user),
# then renames it over DST in one step, so a reader sees the old file or the new one.
put() {
    chmod "$3" "$1"
    if [ "$3" = 0400 ] && [ "$(id -u)" = 0 ]; then
        chown "$owner:$owner" "$1"
    fi
    mv "$1" "$2"
}

if [ ! -s "$ca/ca.key" ] || [ ! -s "$dir/tls/ca.crt" ] || [ "$rotate" = all ]; then
    cat >"$work/ca.cnf" <<'EOF'
[req]
distinguished_name = dn
x509_extensions = v3
[dn]
[v3]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOF
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -config "$work/ca.cnf" -subj "/CN=eventbus development CA" \
        -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
    mv "$work/ca.key" "$ca/ca.key"
    put "$work/ca.crt" "$dir/tls/ca.crt" 0644
    rm -f "$dir/tls/tls.crt"
    echo "dev-certs.sh: new CA in $dir/tls/ca.crt"
fi

if [ ! -s "$dir/tls/tls.crt" ] || [ ! -s "$dir/tls/tls.key" ] || [ "$rotate" = tls ]; then
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -subj "/CN=eventbus" -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
    cat >"$work/ext" <<EOF
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = $sans
EOF
    openssl x509 -req -in "$work/tls.csr" -CA "$dir/tls/ca.crt" -CAkey "$ca/ca.key" \
        -CAcreateserial -CAserial "$work/ca.srl" -days 90 -extfile "$work/ext" \
        -out "$work/tls.crt" 2>/dev/null
    # Key, then certificate: in between the pair does not match, and the server keeps the old
    # one until the next read (2 s later) finds the new pair.
    put "$work/tls.key" "$dir/tls/tls.key" 0400
    put "$work/tls.crt" "$dir/tls/tls.crt" 0644
    echo "dev-certs.sh: new server key pair in $dir/tls ($sans)"
fi

if [ ! -s "$dir/admin-token/token" ] || [ "$rotate" = token ] || [ "$rotate" = all ]; then
    echo "ebt_$(openssl rand -hex 24)" >"$work/token"
    put "$work/token" "$dir/admin-token/token" 0400
    echo "dev-certs.sh: new admin token in $dir/admin-token/token"
fi
