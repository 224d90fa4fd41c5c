# shellcheck shell=bash
# tests/lib/common.sh -- small helpers shared by tests/run.sh and tests/lib/*.sh.
#
# Meant to be `source`d (bash >= 4.4), normally from the repo root by a script that runs
# with `set -euo pipefail`. Sourcing it twice is harmless.
#
# Provides:
#   EVENTBUS_ROOT            absolute path of the repository root (derived from this file)
#   log MSG...               "[eventbus] MSG" on stderr
#   die MSG...               "[eventbus] ERROR: MSG" on stderr, then `exit 1`
#   step NAME [CMD ARGS...]  prints a visible "==> NAME" header (with wall-clock time and
#                            time since the run began); with a command, runs it and prints
#                            "<== NAME: ok (12.3s)" or "<== NAME: FAILED (exit N) (12.3s)"
#                            and returns the command's status
#   add_cleanup CMD          appends CMD (a string, run with eval) to EVENTBUS_CLEANUP,
#                            unless the same string is already there
#   run_cleanup              runs every EVENTBUS_CLEANUP entry, last registered first,
#                            keeps going past failures, then empties the array; also reports
#                            which `step` was running if the shell is exiting with an error
#   port_in_use PORT         true if something listens on 127.0.0.1:PORT (or any address)
#   find_go                  prints the Go toolchain's path (PATH, then /usr/local/go/bin)
#   find_gofmt GO            prints the path of gofmt: next to the go binary GO, else on PATH
#   run_pytest LABEL ARGS... runs .venv's pytest (-ra -p no:cacheprovider) with ARGS from the
#                            current directory; returns 0 if it passed, else logs why and returns
#                            1 (collecting no tests, pytest's exit 5, is a failure too)
#   ensure_apt_packages PKG...  installs Debian packages that are missing (root only)
#
# The caller owns the traps. Install them BEFORE starting any service, e.g. in run.sh:
#
#   source tests/lib/common.sh
#   source tests/lib/postgres.sh
#   source tests/lib/jaeger.sh
#   trap run_cleanup EXIT
#   trap 'exit 130' INT
#   trap 'exit 143' TERM
#   step "postgres" postgres_start
#   step "jaeger"   jaeger_start
#
# postgres_start / jaeger_start register postgres_stop / jaeger_stop here themselves, so a
# single `trap run_cleanup EXIT` stops everything. If run.sh already has its own EXIT trap,
# call run_cleanup (or postgres_stop / jaeger_stop directly) from it instead.

if [[ -n "${_EVENTBUS_COMMON_SH_LOADED:-}" ]]; then
    return 0
fi
_EVENTBUS_COMMON_SH_LOADED=1

# shellcheck disable=SC2034 # used by the files that source this one
EVENTBUS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# Global (not local, even if this file is sourced from inside a function).
if ! declare -p EVENTBUS_CLEANUP >/dev/null 2>&1; then
    declare -ga EVENTBUS_CLEANUP=()
fi

log() {
    printf '[eventbus] %s\n' "$*" >&2
}

die() {
    printf '[eventbus] ERROR: %s\n' "$*" >&2
    exit 1
}

# Microseconds since the epoch (integer).
_eventbus_now_us() {
    if [[ -n "${EPOCHREALTIME:-}" ]]; then
        local t=${EPOCHREALTIME//[.,]/}
        printf '%s\n' "$((10#$t))"
    else
        printf '%s\n' "$(($(date +%s%N) / 1000))"
    fi
}

# Formats a duration given in microseconds as e.g. "12.3s" or "4m05.2s".
_eventbus_fmt_us() {
    local us=$1 ds m s
    ds=$((us / 100000)) # tenths of a second
    if ((ds >= 600)); then
        m=$((ds / 600))
        s=$((ds % 600))
        printf '%dm%02d.%ds' "$m" "$((s / 10))" "$((s % 10))"
    else
        printf '%d.%ds' "$((ds / 10))" "$((ds % 10))"
    fi
}

: "${EVENTBUS_RUN_START_US:=$(_eventbus_now_us)}"
EVENTBUS_CURRENT_STEP=""
EVENTBUS_CURRENT_STEP_START_US=0

step() {
    (($# >= 1)) || die "usage: step NAME [CMD ARGS...]"
    local name=$1
    shift
    local now
    now=$(_eventbus_now_us)
    printf '\n==> %s   [%s, +%s]\n' "$name" "$(date +%H:%M:%S)" \
        "$(_eventbus_fmt_us $((now - EVENTBUS_RUN_START_US)))" >&2
    (($#)) || return 0

    EVENTBUS_CURRENT_STEP=$name
    EVENTBUS_CURRENT_STEP_START_US=$now
    # Deliberately NOT `"$@" || rc=$?`: that would switch off `set -e` inside "$@".
    # Under `set -e` a failure exits right here and run_cleanup reports the step.
    local rc=0
    "$@"
    rc=$?
    local took
    took=$(_eventbus_fmt_us $(($(_eventbus_now_us) - now)))
    EVENTBUS_CURRENT_STEP=""
    if ((rc == 0)); then
        printf '<== %s: ok (%s)\n' "$name" "$took" >&2
    else
        printf '<== %s: FAILED (exit %d) (%s)\n' "$name" "$rc" "$took" >&2
    fi
    return "$rc"
}

add_cleanup() {
    local cmd="$*" c
    for c in "${EVENTBUS_CLEANUP[@]}"; do
        [[ "$c" == "$cmd" ]] && return 0
    done
    EVENTBUS_CLEANUP+=("$cmd")
}

run_cleanup() {
    local rc=$?
    if ((rc != 0)) && [[ -n "${EVENTBUS_CURRENT_STEP:-}" ]]; then
        printf '<== %s: FAILED (exit %d) (%s)\n' "$EVENTBUS_CURRENT_STEP" "$rc" \
            "$(_eventbus_fmt_us $(($(_eventbus_now_us) - EVENTBUS_CURRENT_STEP_START_US)))" >&2
        EVENTBUS_CURRENT_STEP=""
    fi
    local i cmd
    for ((i = ${#EVENTBUS_CLEANUP[@]} - 1; i >= 0; i--)); do
        cmd=${EVENTBUS_CLEANUP[i]}
        log "cleanup: $cmd"
        # `|| ...` keeps a failing cleanup from aborting the others under set -e.
        eval "$cmd" || log "cleanup '$cmd' failed with exit $? (ignored)"
    done
    EVENTBUS_CLEANUP=()
    return "$rc"
}

# True if a TCP listener answers on 127.0.0.1:PORT, or `ss` shows a listener on PORT on any
# address (catches e.g. [::1]:PORT too).
port_in_use() {
    local port=$1
    if timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
        return 0
    fi
    if command -v ss >/dev/null 2>&1 && [[ -n "$(ss -Hltn "sport = :$port" 2>/dev/null)" ]]; then
        return 0
    fi
    return 1
}

# Prints the path of the Go toolchain: `go` on PATH, or the usual /usr/local/go install.
find_go() {
    if command -v go >/dev/null 2>&1; then
        command -v go
    elif [[ -x /usr/local/go/bin/go ]]; then
        printf '%s\n' /usr/local/go/bin/go
    else
        return 1
    fi
}

# Prints the path of gofmt: the one next to the Go binary $1 (from find_go), else gofmt on PATH.
find_gofmt() {
    local gofmt
    gofmt="$(dirname "$1")/gofmt"
    if [[ -x "$gofmt" ]]; then
        printf '%s\n' "$gofmt"
    else
        command -v gofmt
    fi
}

# Runs pytest from the repository's .venv with ARGS and reports the outcome under LABEL.
# Returns instead of dying so that callers can stop their services first.
run_pytest() {
    local label=$1 rc=0
    shift
    "$EVENTBUS_ROOT/.venv/bin/python" -m pytest -ra -p no:cacheprovider "$@" || rc=$?
    case $rc in
        0) log "$label: pytest passed" ;;
        5) log "ERROR: $label: pytest collected no tests (exit 5)" ;;
        *) log "ERROR: $label: pytest failed (exit $rc)" ;;
    esac
    ((rc == 0))
}

# Installs the given Debian packages if dpkg does not already have them.
# Runs `apt-get update` only when the package lists are missing or an install fails.
ensure_apt_packages() {
    local pkg missing=()
    for pkg in "$@"; do
        if [[ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)" != "install ok installed" ]]; then
            missing+=("$pkg")
        fi
    done
    ((${#missing[@]})) || return 0
    if ((EUID != 0)); then
        die "Debian package(s) ${missing[*]} are needed but not installed, and installing them needs root (running as uid $EUID). Install them first: sudo apt-get install -y ${missing[*]}"
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: cannot install ${missing[*]}"
    local apt_opts=(-y -q -o DPkg::Lock::Timeout=300)
    if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then
        log "apt: package lists are empty, running apt-get update"
        apt-get update -q || die "apt-get update failed"
    fi
    log "apt: installing ${missing[*]}"
    if ! DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}"; then
        log "apt: install failed, refreshing package lists and retrying once"
        apt-get update -q || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive apt-get install "${apt_opts[@]}" "${missing[@]}" ||
            die "apt-get install ${missing[*]} failed"
    fi
}
