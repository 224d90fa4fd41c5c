# shellcheck shell=bash
# tests/lib/jaeger.sh -- a real Jaeger v2 (all-in-one, in-memory storage) for trace tests.
#
# Source it (it sources common.sh itself), with `trap run_cleanup EXIT` in place first
# (see common.sh).
#
#   ensure_jaeger
#       Makes sure $EVENTBUS_ROOT/.tools/bin/jaeger is the Jaeger v2 binary (cmd/jaeger) of
#       github.com/jaegertracing/jaeger@$EVENTBUS_JAEGER_VERSION (default v1.76.0, which is
#       Jaeger v2.13.0), building it when missing or built from another version (needs Go >=
#       1.24 on PATH or in /usr/local/go/bin; the first build takes several minutes, later
#       runs reuse the cached binary; .tools/ is gitignored).
#       Exports JAEGER_BIN. If JAEGER_BIN is already set to an executable, that one is used.
#
#   jaeger_start
#       Calls ensure_jaeger if needed, then runs `$JAEGER_BIN` (no --config: in-memory
#       storage; Jaeger's tracing of its own query API is switched off with --set unless
#       EVENTBUS_JAEGER_SELF_TRACING=1) in the background, logging to a temp file, and waits (at most
#       $EVENTBUS_JAEGER_START_TIMEOUT seconds, default 60) until OTLP gRPC 127.0.0.1:4317
#       accepts connections and GET http://127.0.0.1:16686/api/services answers.
#       Fails (exit 1) if 4317, 16686 or any other TCP port Jaeger's default config uses
#       (4318 16685 14250 14268 9411 5778 5779 13132 13133 8888 27777 27778) is already taken, or if
#       Jaeger dies or does not come up in time (the tail of its log is printed).
#       Exports:
#         OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4317
#         JAEGER_QUERY_URL=http://127.0.0.1:16686
#         JAEGER_PID, JAEGER_LOG
#       Registers jaeger_stop with add_cleanup. Idempotent: if the Jaeger started by this
#       shell is still running, it only re-exports the variables.
#
#   jaeger_stop
#       Stops the Jaeger started by this shell (TERM, then KILL after 15 s), removes its log
#       (kept if EVENTBUS_KEEP_LOGS=1) and unsets the variables above. No-op if nothing runs.

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

# Which Jaeger to build: any Go version query for the module github.com/jaegertracing/jaeger
# (a tag or a commit hash). The v2 binary lives in cmd/jaeger of that module; its v1.x tags
# ship the v2 binary too (v1.76.0 = Jaeger v2.13.0, Dec 2025). The Go module proxy this
# workplace reaches serves only some versions of this module: v1.76.0 is the newest it has;
# commit 798e4b0fcf22609e381df764a01461affd813e1e (v2.20.0) answers "403 This module version
# is not available". Override with EVENTBUS_JAEGER_VERSION=<tag|commit>.
: "${EVENTBUS_JAEGER_VERSION:=v1.76.0}"
: "${EVENTBUS_JAEGER_START_TIMEOUT:=60}"
_EVENTBUS_JAEGER_PID="${_EVENTBUS_JAEGER_PID:-}"
_EVENTBUS_JAEGER_LOG="${_EVENTBUS_JAEGER_LOG:-}"
_EVENTBUS_JAEGER_MODULE=github.com/jaegertracing/jaeger

# What `go version -m` must show for a binary built from EVENTBUS_JAEGER_VERSION:
# the tag itself, or for a commit the 12-hex-digit prefix inside its pseudo-version.
_eventbus_jaeger_version_marker() {
    if [[ "$EVENTBUS_JAEGER_VERSION" =~ ^[0-9a-f]{12,40}$ ]]; then
        printf '%s\n' "${EVENTBUS_JAEGER_VERSION:0:12}"
    else
        printf '%s\n' "$EVENTBUS_JAEGER_VERSION"
    fi
}

# Builds cmd/jaeger into $1. `go install pkg@version` refuses Jaeger's tags because its
# go.mod has `replace` directives, so build it from a throwaway main module that requires
# Jaeger and copies those directives (replace/exclude only apply in the main module).
_eventbus_jaeger_build() {
    local go=$1 out=$2 work=$3
    local mod="$_EVENTBUS_JAEGER_MODULE"
    rm -rf "$work" && mkdir -p "$work" || return 1
    cd "$work" || return 1
    export GOFLAGS=-mod=mod CGO_ENABLED=0 GOWORK=off
    echo "+ go mod download -json $mod@$EVENTBUS_JAEGER_VERSION"
    local info dir version goline
    info=$("$go" mod download -json "$mod@$EVENTBUS_JAEGER_VERSION") || { printf '%s\n' "$info"; return 1; }
    dir=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
    version=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Version": "\(.*\)",*$/\1/p')
    [[ -f "$dir/go.mod" && -f "$dir/go.sum" && -n "$version" ]] ||
        { printf 'cannot use go mod download output:\n%s\n' "$info"; return 1; }
    # Jaeger's own go.sum pins every dependency's hash: the module proxy reached here does not
    # serve checksum-database lookups for most of them, so verification must come from it.
    cp "$dir/go.sum" go.sum || return 1
    chmod u+w go.sum
    goline=$(grep -m1 -E '^go [0-9]' "$dir/go.mod") || goline="go 1.24"
    {
        printf 'module eventbus.invalid/jaeger-build\n\n%s\n\nrequire %s %s\n\n' "$goline" "$mod" "$version"
        # Copy replace/exclude directives (single-line and block form), minus local paths.
        awk '
            function emit(kw, line) {
                sub(/\/\/.*/, "", line)
                if (line ~ /^[[:space:]]*$/) return
                if (kw == "replace" && line ~ /=>[[:space:]]*[.\/]/) return
                print kw " " line
            }
            blk != "" && /^\)/ { blk = ""; next }
            blk != ""          { emit(blk, $0); next }
            /^(replace|exclude)[[:space:]]*\(/ { blk = $1; sub(/\(.*/, "", blk); next }
            /^(replace|exclude)[[:space:]]/    { kw = $1; line = $0; sub(/^[a-z]+[[:space:]]+/, "", line); emit(kw, line) }
        ' "$dir/go.mod"
    } >go.mod
    echo "+ go.mod:"
    grep -vE '^\s*$' go.mod
    echo "+ go build -trimpath -o $out $mod/cmd/jaeger"
    "$go" build -trimpath -o "$out" "$mod/cmd/jaeger"
}

ensure_jaeger() {
    if [[ -n "${JAEGER_BIN:-}" && -x "${JAEGER_BIN}" ]]; then
        log "jaeger: using JAEGER_BIN=$JAEGER_BIN"
        export JAEGER_BIN
        return 0
    fi
    local bindir="$EVENTBUS_ROOT/.tools/bin"
    local bin="$bindir/jaeger"
    local marker go=""
    marker=$(_eventbus_jaeger_version_marker)
    go=$(find_go) || go=""

    if [[ -x "$bin" ]]; then
        # Captured first: `go version -m | grep -q` can die of SIGPIPE, failing under pipefail.
        local buildinfo=""
        [[ -n "$go" ]] && buildinfo=$("$go" version -m "$bin" 2>/dev/null || true)
        if [[ -z "$go" ]] ||
            [[ "$buildinfo" =~ [[:space:]]${_EVENTBUS_JAEGER_MODULE}[[:space:]]+[^[:space:]]*${marker} ]]; then
            log "jaeger: using cached $bin ($_EVENTBUS_JAEGER_MODULE $EVENTBUS_JAEGER_VERSION)"
            export JAEGER_BIN="$bin"
            return 0
        fi
        log "jaeger: cached $bin was not built from $EVENTBUS_JAEGER_VERSION, rebuilding"
    fi

    [[ -n "$go" ]] || die "jaeger: $bin is missing and no Go toolchain was found to build it (need Go >= 1.24 on PATH)"
    mkdir -p "$bindir" || die "jaeger: cannot create $bindir"
    local buildlog="$EVENTBUS_ROOT/.tools/jaeger-build.log"
    log "jaeger: building $_EVENTBUS_JAEGER_MODULE/cmd/jaeger@$EVENTBUS_JAEGER_VERSION with $("$go" version)"
    log "jaeger: this takes several minutes with a cold Go module/build cache; output: $buildlog"
    local t0
    t0=$(_eventbus_now_us)
    if ! (_eventbus_jaeger_build "$go" "$bin.tmp" "$EVENTBUS_ROOT/.tools/jaeger-build") >"$buildlog" 2>&1; then
        tail -n 40 "$buildlog" >&2 || true
        rm -f "$bin.tmp"
        die "jaeger: build failed (full log: $buildlog)"
    fi
    mv -f "$bin.tmp" "$bin" || die "jaeger: cannot move the built binary to $bin"
    log "jaeger: built $bin in $(_eventbus_fmt_us $(($(_eventbus_now_us) - t0)))"
    export JAEGER_BIN="$bin"
}

# True if PID exists and is not a zombie (an exited child not yet reaped still passes kill -0).
_eventbus_pid_alive() {
    local stat=""
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(<"/proc/$1/stat") 2>/dev/null || return 0
    stat=${stat##*) } # the state letter follows "(comm) "
    [[ "${stat%% *}" != Z ]]
}

_eventbus_jaeger_running() {
    [[ -n "${_EVENTBUS_JAEGER_PID:-}" ]] && _eventbus_pid_alive "$_EVENTBUS_JAEGER_PID"
}

_eventbus_jaeger_export() {
    export OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:4317"
    export JAEGER_QUERY_URL="http://127.0.0.1:16686"
    export JAEGER_PID="$_EVENTBUS_JAEGER_PID"
    export JAEGER_LOG="$_EVENTBUS_JAEGER_LOG"
}

jaeger_start() {
    if _eventbus_jaeger_running; then
        log "jaeger: already running (pid $_EVENTBUS_JAEGER_PID), reusing it"
        _eventbus_jaeger_export
        add_cleanup jaeger_stop
        return 0
    fi
    ensure_jaeger
    command -v curl >/dev/null 2>&1 || ensure_apt_packages curl

    # The TCP ports the all-in-one config (no --config) listens on: OTLP gRPC/HTTP, query
    # HTTP/gRPC, jaeger/zipkin receivers, sampling, health, metrics, expvar, zpages.
    local port
    for port in 4317 16686 4318 16685 14250 14268 9411 5778 5779 13132 13133 8888 27777 27778; do
        if port_in_use "$port"; then
            local who=""
            command -v ss >/dev/null 2>&1 && who=$(ss -Hltnp "sport = :$port" 2>/dev/null | head -n 3 || true)
            die "jaeger: port $port is already in use by another process${who:+: $who}. Stop it (a Jaeger or OTel collector left over from an earlier run?) and retry."
        fi
    done

    _EVENTBUS_JAEGER_LOG=$(mktemp "${TMPDIR:-/tmp}/eventbus-jaeger.XXXXXX.log") ||
        die "jaeger: mktemp failed"
    log "jaeger: starting $JAEGER_BIN (in-memory storage), log: $_EVENTBUS_JAEGER_LOG"
    # JAEGER_LISTEN_HOST: the all-in-one config binds "localhost" by default; pin it to the
    # IPv4 address the exported endpoints use. (The query UI/API port 16686 binds all
    # interfaces regardless.)
    # Self-tracing: by default jaeger_query traces its own API calls into this same Jaeger
    # (a "jaeger" service shows up in /api/services a few seconds after the first query) and
    # then needs 10 s to stop (its exporter times out against the closed 4317). Off unless
    # EVENTBUS_JAEGER_SELF_TRACING=1. `--set` overrides one key of the built-in all-in-one
    # config; it is not a --config, so storage stays in memory.
    local args=()
    if [[ "${EVENTBUS_JAEGER_SELF_TRACING:-0}" != 1 ]]; then
        args+=(--set=extensions.jaeger_query.enable_tracing=false)
    fi
    JAEGER_LISTEN_HOST="${EVENTBUS_JAEGER_LISTEN_HOST:-127.0.0.1}" \
        "$JAEGER_BIN" "${args[@]}" >"$_EVENTBUS_JAEGER_LOG" 2>&1 </dev/null &
    _EVENTBUS_JAEGER_PID=$!
    add_cleanup jaeger_stop

    local t0 deadline now otlp_ok=0
    t0=$(_eventbus_now_us)
    deadline=$((t0 + EVENTBUS_JAEGER_START_TIMEOUT * 1000000))
    while :; do
        if ! _eventbus_pid_alive "$_EVENTBUS_JAEGER_PID"; then
            tail -n 40 "$_EVENTBUS_JAEGER_LOG" >&2 || true
            _EVENTBUS_JAEGER_PID=""
            die "jaeger: process exited during startup (log above: $_EVENTBUS_JAEGER_LOG)"
        fi
        if ((otlp_ok == 0)) && timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/4317' 2>/dev/null; then
            otlp_ok=1
        fi
        if ((otlp_ok)) && curl -sf -m 2 -o /dev/null http://127.0.0.1:16686/api/services; then
            break
        fi
        now=$(_eventbus_now_us)
        if ((now >= deadline)); then
            tail -n 40 "$_EVENTBUS_JAEGER_LOG" >&2 || true
            die "jaeger: not ready after ${EVENTBUS_JAEGER_START_TIMEOUT}s (OTLP 4317 up: $otlp_ok; log above: $_EVENTBUS_JAEGER_LOG)"
        fi
        sleep 0.2
    done
    _eventbus_jaeger_export
    log "jaeger: ready in $(_eventbus_fmt_us $(($(_eventbus_now_us) - t0))) (pid $_EVENTBUS_JAEGER_PID): OTEL_EXPORTER_OTLP_ENDPOINT=$OTEL_EXPORTER_OTLP_ENDPOINT JAEGER_QUERY_URL=$JAEGER_QUERY_URL"
}

jaeger_stop() {
    if [[ -z "${_EVENTBUS_JAEGER_PID:-}" ]]; then
        return 0
    fi
    local pid=$_EVENTBUS_JAEGER_PID i
    if _eventbus_pid_alive "$pid"; then
        log "jaeger: stopping pid $pid"
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 150; i++)); do
            _eventbus_pid_alive "$pid" || break
            sleep 0.1
        done
        if _eventbus_pid_alive "$pid"; then
            log "jaeger: pid $pid still running 15s after TERM, sending KILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    # Reap it if it is our child; braces keep bash's "Terminated" job notice quiet.
    { wait "$pid"; } 2>/dev/null || true
    _EVENTBUS_JAEGER_PID=""
    if [[ -n "${_EVENTBUS_JAEGER_LOG:-}" ]]; then
        if [[ "${EVENTBUS_KEEP_LOGS:-0}" == 1 ]]; then
            log "jaeger: keeping log $_EVENTBUS_JAEGER_LOG"
        else
            rm -f "$_EVENTBUS_JAEGER_LOG"
        fi
        _EVENTBUS_JAEGER_LOG=""
    fi
    unset OTEL_EXPORTER_OTLP_ENDPOINT JAEGER_QUERY_URL JAEGER_PID JAEGER_LOG
    log "jaeger: stopped"
}
