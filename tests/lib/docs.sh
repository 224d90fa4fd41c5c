# shellcheck shell=bash
# tests/lib/docs.sh -- the code blocks of the READMEs, run, so that they cannot rot.
#
#   docs_check   extracts every fenced block of README.md, client/go/README.md and
#                client/python/README.md, in that order, and runs each against the server that
#                server_start started ($EVENTBUS_ADDR, host:port; the literal address
#                127.0.0.1:50051 in a block is replaced by it, and 127.0.0.1:8080 by its HTTP
#                address, $EVENTBUS_HTTP_ADDR):
#                  sh       bash -euo pipefail, with $EVENTBUS_BIN as `eventbus` first on PATH
#                  rust     must be identical to tests/examples/readme.rs, which is built
#                           (cargo build -p eventbus-tests --example readme) and run
#                  go       built in a scratch module that uses client/go through a `replace`
#                           directive (as client/go/README.md tells users to), then run
#                  python   .venv/bin/python -u (the venv ensure_venv set up)
#                Every block must exit 0 within EVENTBUS_DOCS_TIMEOUT seconds (default 120),
#                except:
#                  <!-- not run: REASON -->                        skipped, and counted
#                  <!-- run until "TEXT", then SIGTERM -->         runs until its output shows
#                                                                  TEXT, then must exit 0 on SIGTERM
#                (the comment is the last non-blank line before the block). A block in another
#                language, not marked, fails the check, and so does a run in which no block ran.
#
#   source tests/lib/docs.sh
#   step "eventbus server for the examples" server_start
#   step "README code blocks" docs_check
#
# Needs EVENTBUS_BIN and EVENTBUS_ADDR (server.sh), Go (find_go) and the .venv. Each function
# body runs in a subshell with `set -euo pipefail`.

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${EVENTBUS_DOCS_TIMEOUT:=120}"

# Writes each fenced block of README $1 to $2/NNN.block, with $2/NNN.info holding
# "FILE:LINE<TAB>LANG<TAB>MARKER" (the marker is the last non-blank line before the fence when it
# is an HTML comment). Numbers continue from the files already in $2.
_docs_extract() {
    local readme=$1 out=$2 first
    first=$(find "$out" -name '*.info' | wc -l)
    awk -v out="$out" -v readme="$readme" -v n="$first" '
        !inblock && /^```/ {
            n++
            lang = substr($0, 4); gsub(/[[:space:]]/, "", lang)
            marker = (prev ~ /^<!--.*-->$/) ? prev : ""
            file = sprintf("%s/%03d", out, n)
            printf "%s:%d\t%s\t%s\n", readme, NR, lang, marker > (file ".info")
            close(file ".info")
            printf "" > (file ".block")
            inblock = 1
            next
        }
        inblock && /^```[[:space:]]*$/ { inblock = 0; close(file ".block"); prev = ""; next }
        inblock { print > (file ".block"); next }
        /[^[:space:]]/ { prev = $0 }
    ' "$EVENTBUS_ROOT/$readme"
}

# Runs "$@" in the background with its output in $2, until the output contains $1; then sends
# SIGTERM and expects exit 0.
_docs_run_until() {
    local text=$1 log=$2 pid i rc=0
    shift 2
    : >"$log"
    "$@" >"$log" 2>&1 &
    pid=$!
    for ((i = 0; i < EVENTBUS_DOCS_TIMEOUT * 10; i++)); do
        grep -qF -- "$text" "$log" && break
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$log" >&2
            die "docs: exited before printing \"$text\""
        fi
        sleep 0.1
    done
    if ! grep -qF -- "$text" "$log"; then
        kill -KILL "$pid" 2>/dev/null || true
        cat "$log" >&2
        die "docs: \"$text\" did not show within ${EVENTBUS_DOCS_TIMEOUT}s"
    fi
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    cat "$log" >&2
    ((rc == 0)) || die "docs: exit $rc on SIGTERM (expected 0)"
}

# Runs "$@" with the time limit, or until TEXT then SIGTERM when $1 (a marker) says so.
_docs_exec() {
    local marker=$1 log=$2 until
    shift 2
    local until_re='^<!-- run until "(.*)", then SIGTERM -->$'
    if [[ "$marker" =~ $until_re ]]; then
        until=${BASH_REMATCH[1]}
        _docs_run_until "$until" "$log" "$@"
    else
        timeout "$EVENTBUS_DOCS_TIMEOUT" "$@" || die "docs: exit $? (see the output above)"
    fi
}

_docs_go() {
    local block=$1 marker=$2 work=$3 go
    go=$(find_go) || die "docs: no Go toolchain found"
    local module
    module="$work/go-$(basename "$block" .block)"
    mkdir -p "$module"
    sed "s/127\.0\.0\.1:50051/$EVENTBUS_ADDR/g" "$block" >"$module/main.go"
    (
        cd "$module"
        "$go" mod init example.com/readme >/dev/null 2>&1
        "$go" mod edit -require=github.com/eventbus-dev/eventbus/client/go@v0.0.0 \
            -replace=github.com/eventbus-dev/eventbus/client/go="$EVENTBUS_ROOT/client/go"
        "$go" mod tidy >/dev/null
        "$go" build -o readme .
    )
    _docs_exec "$marker" "$module/log" "$module/readme"
}

_docs_python() {
    local block=$1 marker=$2 work=$3 script
    script="$work/$(basename "$block" .block).py"
    sed "s/127\.0\.0\.1:50051/$EVENTBUS_ADDR/g" "$block" >"$script"
    (cd "$work" && _docs_exec "$marker" "$script.log" "$EVENTBUS_ROOT/.venv/bin/python" -u "$script")
}

_docs_sh() {
    local block=$1 marker=$2 work=$3 script
    script="$work/$(basename "$block" .block).sh"
    sed -e "s/127\.0\.0\.1:50051/$EVENTBUS_ADDR/g" -e "s/127\.0\.0\.1:8080/$EVENTBUS_HTTP_ADDR/g" "$block" >"$script"
    (cd "$work" && PATH="$(dirname "$EVENTBUS_BIN"):$PATH" _docs_exec "$marker" "$script.log" bash -euo pipefail "$script")
}

_docs_rust() {
    local block=$1 marker=$2 work=$3 target
    diff -u "$EVENTBUS_ROOT/tests/examples/readme.rs" "$block" >&2 ||
        die "docs: the Rust block differs from tests/examples/readme.rs (diff above); keep them the same"
    (cd "$EVENTBUS_ROOT" && cargo build --locked -q -p eventbus-tests --example readme)
    target=${CARGO_TARGET_DIR:-target}
    [[ "$target" == /* ]] || target="$EVENTBUS_ROOT/$target"
    _docs_exec "$marker" "$work/rust.log" "$target/debug/examples/readme"
}

docs_check() (
    set -euo pipefail
    [[ -n "${EVENTBUS_ADDR:-}" ]] || die "docs: EVENTBUS_ADDR is not set (run server_start first)"
    [[ -n "${EVENTBUS_HTTP_ADDR:-}" ]] || die "docs: EVENTBUS_HTTP_ADDR is not set (run server_start first)"
    [[ -x "${EVENTBUS_BIN:-}" ]] || die "docs: EVENTBUS_BIN is not set (run build_server first)"
    local work readme info ran=0 skipped=0
    work=$(mktemp -d /tmp/eventbus-docs.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    mkdir "$work/blocks"
    for readme in README.md client/go/README.md client/python/README.md; do
        _docs_extract "$readme" "$work/blocks"
    done
    for info in "$work"/blocks/*.info; do
        local where lang marker block
        IFS=$'\t' read -r where lang marker <"$info"
        block=${info%.info}.block
        if [[ "$marker" == "<!-- not run:"* ]]; then
            local reason=${marker#<!-- not run: }
            log "docs: $where ($lang): skipped, not run: ${reason% -->}"
            skipped=$((skipped + 1))
            continue
        fi
        log "docs: $where ($lang)${marker:+ $marker}"
        case $lang in
            sh | bash) _docs_sh "$block" "$marker" "$work" ;;
            rust) _docs_rust "$block" "$marker" "$work" ;;
            go) _docs_go "$block" "$marker" "$work" ;;
            python) _docs_python "$block" "$marker" "$work" ;;
            *) die "docs: $where: no runner for a \`\`\`$lang block; mark it <!-- not run: REASON -->" ;;
        esac
        ran=$((ran + 1))
    done
    ((ran > 0)) || die "docs: no code block ran"
    log "docs: $ran blocks ran, $skipped skipped (marked not run)"
)
