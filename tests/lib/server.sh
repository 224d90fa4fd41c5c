# shellcheck shell=bash
# tests/lib/server.sh -- the eventbus binary for the client suites and the examples.
#
#   build_server    cargo build of the `eventbus` binary; exports EVENTBUS_BIN (absolute)
#   server_start    starts `eventbus serve` on 127.0.0.1:0 (gRPC and HTTP) with a throwaway SQLite
#                   file, waits for its address file (the readiness signal), exports EVENTBUS_ADDR
#                   and EVENTBUS_HTTP_ADDR (host:port) and registers server_stop as cleanup
#   server_stop     SIGTERM, then waits for the process to exit

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

build_server() {
    cargo build --locked --release --bin eventbus
    local target=${CARGO_TARGET_DIR:-target}
    [[ "$target" == /* ]] || target="$EVENTBUS_ROOT/$target"
    export EVENTBUS_BIN="$target/release/eventbus"
    "$EVENTBUS_BIN" --version
}

server_start() {
    [[ -x "${EVENTBUS_BIN:-}" ]] || die "server_start: EVENTBUS_BIN is not set (run build_server first)"
    EVENTBUS_SERVER_DIR=$(mktemp -d /tmp/eventbus-server.XXXXXX)
    env -u EVENTBUS_DATABASE_URL "$EVENTBUS_BIN" serve --listen 127.0.0.1:0 \
        --listen-addr-file "$EVENTBUS_SERVER_DIR/addr" --data-file "$EVENTBUS_SERVER_DIR/eventbus.db" \
        --http-addr 127.0.0.1:0 --http-addr-file "$EVENTBUS_SERVER_DIR/http-addr" \
        >"$EVENTBUS_SERVER_DIR/log" 2>&1 &
    EVENTBUS_SERVER_PID=$!
    add_cleanup server_stop
    local i
    for ((i = 0; i < 600; i++)); do
        if [[ -s "$EVENTBUS_SERVER_DIR/addr" ]]; then
            # The server writes the HTTP address file before the gRPC one.
            export EVENTBUS_ADDR EVENTBUS_HTTP_ADDR
            EVENTBUS_ADDR=$(<"$EVENTBUS_SERVER_DIR/addr")
            EVENTBUS_HTTP_ADDR=$(<"$EVENTBUS_SERVER_DIR/http-addr")
            log "server: pid $EVENTBUS_SERVER_PID listening on $EVENTBUS_ADDR (HTTP $EVENTBUS_HTTP_ADDR)"
            return 0
        fi
        kill -0 "$EVENTBUS_SERVER_PID" 2>/dev/null || { cat "$EVENTBUS_SERVER_DIR/log" >&2; die "server exited"; }
        sleep 0.05
    done
    cat "$EVENTBUS_SERVER_DIR/log" >&2
    die "server did not write its address within 30 s"
}

server_stop() {
    [[ -n "${EVENTBUS_SERVER_PID:-}" ]] || return 0
    kill -TERM "$EVENTBUS_SERVER_PID" 2>/dev/null || true
    wait "$EVENTBUS_SERVER_PID" 2>/dev/null || true
    rm -rf "${EVENTBUS_SERVER_DIR:-/nonexistent}"
    unset EVENTBUS_SERVER_PID EVENTBUS_SERVER_DIR
}
