# shellcheck shell=bash
# tests/lib/http_ingress.sh -- the CloudEvents HTTP ingress with the official CloudEvents SDKs and
# curl, against the built binary.
#
#   http_ingress_tests   starts `eventbus serve` with --listen and --http-addr on 127.0.0.1:0 (the
#                        address files are the readiness signal) and a throwaway SQLite file;
#                        runs tests/http/test_sdk.py (Python `cloudevents`: to_binary,
#                        to_structured), tests/http/go (Go sdk-go's HTTP client) and curl in the
#                        three modes; every suite reads its events back over gRPC. Stops the
#                        server at the end, also on failure.
#
#   source tests/lib/http_ingress.sh
#   EVENTBUS_BIN=$PWD/target/debug/eventbus step "HTTP ingress: SDKs and curl" http_ingress_tests
#
# Needs EVENTBUS_BIN, the .venv (ensure_venv), Go (find_go; modules through the Go proxy unless
# cached) and curl. The body runs in a subshell with `set -euo pipefail`.

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Posts stdin to the ingress of namespace $1 with the remaining arguments as curl options; checks
# that the answer is HTTP $2 with JSON body $3 (compared after `python -m json.tool`).
_http_curl_expect() {
    local ns=$1 status=$2 expected=$3 out got
    shift 3
    out=$(mktemp)
    got=$(curl -sS -o "$out" -w '%{http_code}' -X POST "http://$EVENTBUS_HTTP_ADDR/v1/namespaces/$ns/events" \
        --data-binary @- "$@")
    [[ "$got" == "$status" ]] || die "curl $*: HTTP $got, want $status: $(cat "$out")"
    diff <(.venv/bin/python -m json.tool --sort-keys "$out") <(.venv/bin/python -m json.tool --sort-keys <<<"$expected") >&2 ||
        die "curl $*: unexpected body (diff above)"
    rm -f "$out"
}

_http_curl_checks() {
    local ns=curl-$RANDOM$RANDOM
    log "http ingress: curl, binary mode"
    _http_curl_expect "$ns" 200 '{"events":[{"sequence":1,"duplicate":false}]}' \
        -H 'ce-specversion: 1.0' -H 'ce-id: c1' -H 'ce-source: /curl' -H 'ce-type: order.created' \
        -H 'ce-subject: eu%2F1%20x' -H 'content-type: application/json' <<<'{"total":42}'
    log "http ingress: curl, structured mode"
    _http_curl_expect "$ns" 200 '{"events":[{"sequence":2,"duplicate":false}]}' \
        -H 'content-type: application/cloudevents+json' \
        <<<'{"specversion":"1.0","id":"c2","source":"/curl","type":"order.created","data":{"total":7}}'
    log "http ingress: curl, batched mode (with a duplicate of c1)"
    _http_curl_expect "$ns" 200 \
        '{"events":[{"sequence":3,"duplicate":false},{"sequence":1,"duplicate":true}]}' \
        -H 'content-type: application/cloudevents-batch+json' \
        <<<'[{"specversion":"1.0","id":"c3","source":"/curl","type":"order.paid"},
             {"specversion":"1.0","id":"c1","source":"/curl","type":"order.created"}]'
    log "http ingress: curl, an invalid event and an unknown content type"
    _http_curl_expect "$ns" 400 \
        '{"error":{"code":"INVALID_ARGUMENT","message":"events[0].type: is required",
          "field_violations":[{"field":"events[0].type","description":"is required"}]}}' \
        -H 'ce-specversion: 1.0' -H 'ce-id: c4' -H 'ce-source: /curl' <<<''
    local text
    text=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'content-type: text/plain' --data 'hi' \
        "http://$EVENTBUS_HTTP_ADDR/v1/namespaces/$ns/events")
    [[ "$text" == 415 ]] || die "curl: text/plain without ce-* headers: HTTP $text, want 415"
    log "http ingress: curl, the events read back over gRPC"
    local listed
    listed=$("$EVENTBUS_BIN" events list --addr "$EVENTBUS_ADDR" --namespace "$ns" --json)
    .venv/bin/python - "$listed" <<'PY'
import json, sys
stored = [json.loads(line) for line in sys.argv[1].splitlines()]
got = [(s["sequence"], s["event"]["id"]) for s in stored]
assert got == [(1, "c1"), (2, "c2"), (3, "c3")], got
first = stored[0]["event"]
assert (first["subject"], first["data"]) == ("eu/1 x", {"total": 42}), first
PY
}

http_ingress_tests() (
    set -euo pipefail
    cd "$EVENTBUS_ROOT"
    [[ -x "${EVENTBUS_BIN:-}" ]] || die "http ingress: EVENTBUS_BIN is not set (run build_server first)"
    command -v curl >/dev/null || ensure_apt_packages curl
    local go dir pid
    go=$(find_go) || die "http ingress: no Go toolchain found"
    dir=$(mktemp -d /tmp/eventbus-http.XXXXXX)
    env -u EVENTBUS_DATABASE_URL "$EVENTBUS_BIN" serve --listen 127.0.0.1:0 --listen-addr-file "$dir/addr" \
        --http-addr 127.0.0.1:0 --http-addr-file "$dir/http-addr" --data-file "$dir/eventbus.db" \
        >"$dir/log" 2>&1 &
    pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -s "$dir/addr" ]] && break
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; die "http ingress: the server exited"; }
        sleep 0.05
    done
    [[ -s "$dir/addr" ]] || { cat "$dir/log" >&2; die "http ingress: no address file within 30 s"; }
    export EVENTBUS_ADDR EVENTBUS_HTTP_ADDR
    EVENTBUS_ADDR=$(<"$dir/addr")
    EVENTBUS_HTTP_ADDR=$(<"$dir/http-addr")
    log "http ingress: server pid $pid, gRPC $EVENTBUS_ADDR, HTTP $EVENTBUS_HTTP_ADDR"

    log "http ingress: Python cloudevents SDK (tests/http/test_sdk.py): mypy, pytest"
    .venv/bin/mypy --config-file client/python/pyproject.toml tests/http
    (cd tests/http && run_pytest "http ingress" test_sdk.py) || die "http ingress: the Python SDK tests failed"
    log "http ingress: Go sdk-go HTTP client (tests/http/go)"
    local gofmt unformatted
    gofmt=$(find_gofmt "$go") || die "http ingress: gofmt not found"
    unformatted=$("$gofmt" -l tests/http/go)
    [[ -z "$unformatted" ]] || die "http ingress: not gofmt-ed: $unformatted"
    (cd tests/http/go && "$go" vet ./... && "$go" test -count=1 ./...) || die "http ingress: the Go SDK test failed"
    _http_curl_checks
)
