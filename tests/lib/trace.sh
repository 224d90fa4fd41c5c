# shellcheck shell=bash
# tests/lib/trace.sh -- traces and metrics end to end: a real Jaeger, the real server, Python
# producers and runners with the OpenTelemetry SDK (tests/trace/test_trace.py).
#
#   trace_tests   ensure_venv and jaeger_start (which exports OTEL_EXPORTER_OTLP_ENDPOINT and
#                 JAEGER_QUERY_URL), then mypy and pytest over tests/trace; the tests start
#                 `$EVENTBUS_BIN serve` themselves. Stops Jaeger (unsetting those variables)
#                 before it returns. EVENTBUS_BIN must be set (build_server).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/codegen.sh"
source "$(dirname "${BASH_SOURCE[0]}")/jaeger.sh"

trace_tests() {
    [[ -x "${EVENTBUS_BIN:-}" ]] || die "trace_tests: EVENTBUS_BIN is not set (run build_server first)"
    ensure_venv
    jaeger_start
    cd "$EVENTBUS_ROOT" || return 1
    .venv/bin/mypy --config-file client/python/pyproject.toml tests/trace
    local rc=0
    run_pytest "trace tests" tests/trace || rc=$?
    # Also unsets OTEL_EXPORTER_OTLP_ENDPOINT: servers that later steps start must not trace.
    jaeger_stop
    ((rc == 0)) || die "trace tests failed"
}
