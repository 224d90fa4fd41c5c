# shellcheck shell=bash
# tests/lib/trace.sh -- traces and metrics end to end: a real Jaeger, the real server, Python
# producers and runners with the OpenTelemetry SDK (tests/trace/test_trace.py).
#
#   trace_tests   ensure_venv and jaeger_start, then starts `$EVENTBUS_BIN serve` exporting OTLP to
#                 that Jaeger (batch delay 200 ms) with its metrics endpoint on, runs mypy and
#                 pytest over tests/trace, and stops the server. EVENTBUS_BIN must be set
#                 (build_server).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/codegen.sh"
source "$(dirname "${BASH_SOURCE[0]}")/jaeger.sh"

trace_tests() {
    [[ -x "${EVENTBUS_BIN:-}" ]] || die "trace_tests: EVENTBUS_BIN is not set (run build_server first)"
    ensure_venv
    jaeger_start
    local dir
    dir=$(mktemp -d /tmp/eventbus-trace.XXXXXX)
    # The metrics port: bind 127.0.0.1:0 is not possible for a second listener with one address
    # file, so pick a free port the kernel hands out and pass it on.
    local metrics_port
    metrics_port=$("$EVENTBUS_ROOT/.venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    env -u EVENTBUS_DATABASE_URL OTEL_SERVICE_NAME=eventbus OTEL_BSP_SCHEDULE_DELAY=200 \
        "$EVENTBUS_BIN" serve --listen 127.0.0.1:0 --listen-addr-file "$dir/addr" \
        --data-file "$dir/eventbus.db" --metrics-addr "127.0.0.1:$metrics_port" >"$dir/log" 2>&1 &
    local pid=$!
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -s "$dir/addr" ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; die "trace server exited"; }
        sleep 0.05
    done
    [[ -s "$dir/addr" ]] || { cat "$dir/log" >&2; die "trace server did not start"; }
    local rc=0
    (
        cd "$EVENTBUS_ROOT"
        .venv/bin/mypy --config-file client/python/pyproject.toml tests/trace
        EVENTBUS_ADDR=$(<"$dir/addr") EVENTBUS_METRICS_URL="http://127.0.0.1:$metrics_port/metrics" \
            .venv/bin/python -m pytest tests/trace -ra -p no:cacheprovider
    ) || rc=$?
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || { log "trace server exited with $?"; rc=1; }
    if ((rc != 0)); then
        tail -n 50 "$dir/log" >&2
    fi
    rm -rf "$dir"
    return "$rc"
}
