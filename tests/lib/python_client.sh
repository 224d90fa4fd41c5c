# shellcheck shell=bash
# tests/lib/python_client.sh -- the Python client's checks: type checking, tests, the example.
#
# Source it (it sources codegen.sh, and through it common.sh); every function works from the
# repository root whatever the caller's directory, runs in a subshell with `set -euo pipefail`
# and returns non-zero on failure:
#
#   python_client_tests  ensure_venv, then mypy (strict, the config in
#                        client/python/pyproject.toml) over src, tests, examples and tools, then
#                        pytest over client/python/tests with EVENTBUS_BIN set: the unit tests,
#                        the tests against an in-process fake server, and the integration tests,
#                        which start `$EVENTBUS_BIN serve` on 127.0.0.1:0 themselves. EVENTBUS_BIN
#                        defaults to target/debug/eventbus and must exist (build it first).
#                        pytest collecting no tests (exit 5) is a failure.
#   python_example       ensure_venv, then client/python/examples/orders.py `all` against the
#                        running server at $EVENTBUS_ADDR (host:port), in a namespace of its own:
#                        EVENTBUS_PYTHON_EXAMPLE_ORDERS orders (default 2000), failing if any order
#                        did not start exactly once and wake exactly once within
#                        EVENTBUS_PYTHON_EXAMPLE_TIMEOUT seconds (default 300).
#
#   source tests/lib/python_client.sh
#   step "python client: mypy + pytest" python_client_tests
#   EVENTBUS_ADDR=127.0.0.1:50051 step "python example: orders" python_example

# shellcheck source=tests/lib/codegen.sh
source "$(dirname "${BASH_SOURCE[0]}")/codegen.sh"

python_client_tests() (
    set -euo pipefail
    ensure_venv
    cd "$EVENTBUS_ROOT"
    local bin=${EVENTBUS_BIN:-target/debug/eventbus}
    [[ -f "$bin" && -x "$bin" ]] ||
        die "python client: EVENTBUS_BIN=$bin is not an executable eventbus binary; build it first (cargo build -p eventbus-server --bin eventbus) or point EVENTBUS_BIN at one"
    # Absolute, so it stays valid whatever directory the tests start the server from.
    bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

    log "python client: mypy --strict (client/python/pyproject.toml): src tests examples tools"
    .venv/bin/mypy --config-file client/python/pyproject.toml \
        client/python/src client/python/tests client/python/examples client/python/tools

    # The TLS + token suite makes its certificates with the openssl command.
    command -v openssl >/dev/null 2>&1 || ensure_apt_packages openssl
    log "python client: pytest client/python/tests with EVENTBUS_BIN=$bin"
    EVENTBUS_BIN="$bin" run_pytest "python client" client/python/tests
)

python_example() (
    set -euo pipefail
    ensure_venv
    cd "$EVENTBUS_ROOT"
    [[ -n "${EVENTBUS_ADDR:-}" ]] ||
        die "python example: EVENTBUS_ADDR is not set; it must name a running eventbus server (host:port)"
    local orders=${EVENTBUS_PYTHON_EXAMPLE_ORDERS:-2000}
    local timeout=${EVENTBUS_PYTHON_EXAMPLE_TIMEOUT:-300}
    # Unique per run: the example's consumer group and listeners must start empty.
    local namespace
    namespace="py-orders-$(date +%s)-$$-${RANDOM}"
    log "python example: orders.py all --addr $EVENTBUS_ADDR --namespace $namespace --orders $orders"
    .venv/bin/python client/python/examples/orders.py all \
        --addr "$EVENTBUS_ADDR" --namespace "$namespace" --orders "$orders" --timeout "$timeout" ||
        die "python example: orders.py failed (exit $?)"
)
