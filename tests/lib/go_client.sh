# shellcheck shell=bash
# tests/lib/go_client.sh -- the Go client (client/go): vet, unit tests, integration tests
# against a live server, and the orders example.
#
# Source it (it sources common.sh itself); every function works from the repository root
# whatever the caller's directory, and returns non-zero on failure:
#
#   go_client_tests   gofmt check; go vet with and without the `integration` build tag;
#                     go test -race of the unit tests (no server); then go test -race
#                     -tags integration of the TestIntegration* tests, each of which starts its
#                     own server from $EVENTBUS_BIN on 127.0.0.1:0 (required: never skipped)
#   go_example        builds client/go/examples/orders and runs it against the server already
#                     running at $EVENTBUS_ADDR (host:port, required): first runner and producer
#                     in one process, then as two processes; each run in a fresh namespace
#
#   source tests/lib/go_client.sh
#   EVENTBUS_BIN=$PWD/target/debug/eventbus step "go client" go_client_tests
#   EVENTBUS_ADDR=127.0.0.1:50051 step "go example" go_example
#
# Settings (environment):
#   EVENTBUS_BIN                  the eventbus binary (go_client_tests); a relative path is taken
#                                 from the caller's directory
#   EVENTBUS_ADDR                 address of a running server (go_example)
#   EVENTBUS_GO_EXAMPLE_ORDERS    orders per example run (default 2000)
#   EVENTBUS_GO_EXAMPLE_TIMEOUT   time limit of each example run (default 5m)
#
# Only the Go toolchain is needed (Go >= 1.25); module downloads go through the Go proxy
# unless the module cache already has them. Each function body runs in a subshell with
# `set -euo pipefail`.

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${EVENTBUS_GO_EXAMPLE_ORDERS:=2000}"
: "${EVENTBUS_GO_EXAMPLE_TIMEOUT:=5m}"

go_client_tests() (
    set -euo pipefail
    local go bin
    go=$(find_go) || die "go client: no Go toolchain found (need Go >= 1.25 on PATH)"
    [[ -n "${EVENTBUS_BIN:-}" ]] ||
        die "go client: EVENTBUS_BIN must name the eventbus binary for the integration tests (tests/run.sh builds it); they are never skipped"
    bin=$EVENTBUS_BIN
    [[ "$bin" == /* ]] || bin="$PWD/$bin"
    [[ -f "$bin" && -x "$bin" ]] || die "go client: EVENTBUS_BIN=$EVENTBUS_BIN is not an executable file"

    cd "$EVENTBUS_ROOT/client/go"
    log "go client: $("$go" version)"
    log "go client: gofmt -l eventbus examples"
    local gofmt unformatted
    gofmt=$(find_gofmt "$go") || die "go client: gofmt not found next to $go or on PATH"
    unformatted=$("$gofmt" -l eventbus examples)
    [[ -z "$unformatted" ]] ||
        die "go client: files not gofmt-ed (fix with: cd client/go && gofmt -w eventbus examples):"$'\n'"$unformatted"
    log "go client: go vet ./... (and with -tags integration)"
    "$go" vet ./...
    "$go" vet -tags integration ./...
    log "go client: go test -race ./... (unit tests)"
    "$go" test -race -count=1 ./...
    log "go client: go test -race -tags integration -run '^TestIntegration' ./... (EVENTBUS_BIN=$bin)"
    EVENTBUS_BIN="$bin" "$go" test -race -count=1 -tags integration -run '^TestIntegration' ./...
)

go_example() (
    set -euo pipefail
    local go
    go=$(find_go) || die "go example: no Go toolchain found (need Go >= 1.25 on PATH)"
    [[ -n "${EVENTBUS_ADDR:-}" ]] ||
        die "go example: EVENTBUS_ADDR must be host:port of a running eventbus server"
    cd "$EVENTBUS_ROOT/client/go"

    local tmp runner_pid=""
    tmp=$(mktemp -d)
    # This subshell's own trap: removes the binary and stops a runner left behind by a failure.
    trap '[[ -n "$runner_pid" ]] && kill "$runner_pid" 2>/dev/null; rm -rf "$tmp"' EXIT
    log "go example: go build ./examples/orders"
    "$go" build -o "$tmp/orders" ./examples/orders

    local run_id orders=$EVENTBUS_GO_EXAMPLE_ORDERS
    local common=(-addr "$EVENTBUS_ADDR" -orders "$orders" -timeout "$EVENTBUS_GO_EXAMPLE_TIMEOUT")
    run_id="$(date +%s)-$$-$RANDOM"

    log "go example: runner and producer in one process: $orders orders, namespace go-example-all-$run_id"
    "$tmp/orders" "${common[@]}" -namespace "go-example-all-$run_id" all ||
        die "go example: the single-process run failed (see its counts above)"

    local ns="go-example-split-$run_id"
    log "go example: runner and producer as two processes: $orders orders, namespace $ns"
    "$tmp/orders" "${common[@]}" -namespace "$ns" runner &
    runner_pid=$!
    "$tmp/orders" "${common[@]}" -namespace "$ns" producer ||
        die "go example: the producer failed"
    local rc=0
    wait "$runner_pid" || rc=$?
    runner_pid=""
    ((rc == 0)) || die "go example: the runner exited with $rc (see its counts above)"
    log "go example: both runs started and woke every order exactly once"
)
