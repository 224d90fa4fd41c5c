# shellcheck shell=bash
# tests/lib/postgres.sh -- a throwaway PostgreSQL server for the tests.
#
# Source it (it sources common.sh itself), with `trap run_cleanup EXIT` in place first
# (see common.sh), then call postgres_start.
#
#   postgres_start
#       1. If EVENTBUS_TEST_DATABASE_URL is set and `select 1` works against it, uses it as is
#          (nothing is started and nothing will be stopped). If it is set but unreachable, says
#          so and starts a throwaway server instead (overriding it).
#       2. Otherwise makes sure the Debian `postgresql` package is installed (installs it with
#          apt-get if missing; that needs root, else it fails with a clear message), creates a
#          fresh temp dir (owned by the `postgres` user when running as root), runs
#          `initdb -U postgres --auth=trust -E UTF8 --locale=C.UTF-8` there, and starts the
#          server on 127.0.0.1 only (Unix socket in the temp dir) with max_connections=200,
#          shared_buffers=256MB, fsync=on. Port: $EVENTBUS_PG_PORT if set, else 54329; if
#          that one is taken, the next free one above it (the URL tells which). Waits with `pg_ctl -w` and `pg_isready`,
#          creates database eventbus_test, and registers postgres_stop with add_cleanup.
#       Exports:
#         EVENTBUS_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:PORT/eventbus_test
#         EVENTBUS_PG_LOG=<server log file>  (only for a server it started)
#       Idempotent: a second call while the server runs just reuses it. Never skips: if no
#       server can be had, it prints why (with the server log tail) and exits 1.
#       Do not call it inside $(...) or a pipeline: the exports would be lost.
#
#   postgres_stop
#       If postgres_start started a server in this shell: `pg_ctl -m fast stop`, removes its
#       temp dir (set EVENTBUS_KEEP_LOGS=1 to keep it) and unsets the variables above.
#       Otherwise does nothing. Safe to call more than once; run_cleanup calls it.

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${EVENTBUS_PG_DBNAME:=eventbus_test}"
_EVENTBUS_PG_DIR="${_EVENTBUS_PG_DIR:-}"   # temp dir of the server this shell started
_EVENTBUS_PG_BIN="${_EVENTBUS_PG_BIN:-}"   # e.g. /usr/lib/postgresql/15/bin

# Newest /usr/lib/postgresql/*/bin that has initdb, or nothing.
_eventbus_pg_find_bin() {
    local d best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]] || continue
        best=$(printf '%s\n%s\n' "$best" "$d" | sed '/^$/d' | sort -V | tail -n 1)
    done
    [[ -n "$best" ]] && printf '%s\n' "$best"
}

# Runs a server-side command as the cluster owner: `postgres` when we are root (initdb and
# pg_ctl refuse to run as root), else the current user.
_eventbus_pg_as_owner() {
    if ((EUID == 0)); then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

# psql that works whether or not the server binaries are installed.
_eventbus_psql() {
    if [[ -n "$_EVENTBUS_PG_BIN" && -x "$_EVENTBUS_PG_BIN/psql" ]]; then
        "$_EVENTBUS_PG_BIN/psql" "$@"
    else
        psql "$@"
    fi
}

_eventbus_pg_url_works() {
    PGCONNECT_TIMEOUT=5 _eventbus_psql "$1" -X -q -A -t -v ON_ERROR_STOP=1 -c 'select 1' >/dev/null 2>&1
}

# Prints a URL with any password replaced by ***.
_eventbus_pg_redact() {
    printf '%s\n' "$1" | sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#'
}

_eventbus_pg_dump_log() {
    local logf=$1
    if [[ -f "$logf" ]]; then
        log "postgres: last lines of $logf:"
        tail -n 30 "$logf" >&2 || true
    fi
}

postgres_start() {
    # 0. A server this shell already started and that still runs: reuse it.
    if [[ -n "$_EVENTBUS_PG_DIR" && -n "${EVENTBUS_TEST_DATABASE_URL:-}" ]] &&
        _eventbus_pg_url_works "$EVENTBUS_TEST_DATABASE_URL"; then
        log "postgres: already running (dir $_EVENTBUS_PG_DIR), reusing $EVENTBUS_TEST_DATABASE_URL"
        add_cleanup postgres_stop
        return 0
    fi

    # 1. A database given from outside.
    if [[ -z "$_EVENTBUS_PG_DIR" && -n "${EVENTBUS_TEST_DATABASE_URL:-}" ]]; then
        local shown
        shown=$(_eventbus_pg_redact "$EVENTBUS_TEST_DATABASE_URL")
        if ! command -v psql >/dev/null 2>&1 && [[ -z "$(_eventbus_pg_find_bin)" ]]; then
            log "postgres: psql is needed to check EVENTBUS_TEST_DATABASE_URL"
            ensure_apt_packages postgresql-client
        fi
        _EVENTBUS_PG_BIN=$(_eventbus_pg_find_bin) || _EVENTBUS_PG_BIN=""
        if _eventbus_pg_url_works "$EVENTBUS_TEST_DATABASE_URL"; then
            log "postgres: using the database given in EVENTBUS_TEST_DATABASE_URL=$shown (not starting one)"
            export EVENTBUS_TEST_DATABASE_URL
            return 0
        fi
        log "postgres: WARNING: EVENTBUS_TEST_DATABASE_URL=$shown is set but 'select 1' fails there; starting a throwaway server instead"
        unset EVENTBUS_TEST_DATABASE_URL
    fi

    # A stale dir from a server of ours that died: clean it up first.
    if [[ -n "$_EVENTBUS_PG_DIR" ]]; then
        log "postgres: the server in $_EVENTBUS_PG_DIR no longer answers; replacing it"
        postgres_stop
    fi

    # 2. Make sure the server binaries are there.
    _EVENTBUS_PG_BIN=$(_eventbus_pg_find_bin) || _EVENTBUS_PG_BIN=""
    if [[ -z "$_EVENTBUS_PG_BIN" ]]; then
        log "postgres: no PostgreSQL server binaries under /usr/lib/postgresql/*/bin; installing the Debian package"
        ensure_apt_packages postgresql
        _EVENTBUS_PG_BIN=$(_eventbus_pg_find_bin) ||
            die "postgres: package postgresql is installed but no /usr/lib/postgresql/*/bin/initdb was found"
    fi
    if ((EUID == 0)); then
        id -u postgres >/dev/null 2>&1 || die "postgres: running as root but there is no 'postgres' user to own the cluster"
        command -v runuser >/dev/null 2>&1 || die "postgres: running as root but runuser is missing"
    fi
    local bin=$_EVENTBUS_PG_BIN
    log "postgres: using $("$bin/postgres" --version) from $bin"

    # 3. Fresh cluster in a temp dir.
    local dir
    dir=$(mktemp -d "${EVENTBUS_PG_TMPDIR:-/tmp}/eventbus-pg.XXXXXX") || die "postgres: mktemp failed"
    _EVENTBUS_PG_DIR=$dir
    add_cleanup postgres_stop
    chmod 755 "$dir"
    if ((EUID == 0)); then
        chown postgres: "$dir" || die "postgres: cannot chown $dir to postgres"
    fi
    local data="$dir/data" logf="$dir/postgres.log"
    log "postgres: initdb in $data"
    if ! _eventbus_pg_as_owner "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
        --locale=C.UTF-8 >"$dir/initdb.log" 2>&1; then
        cat "$dir/initdb.log" >&2 || true
        die "postgres: initdb failed"
    fi

    # 4. Pick a port and start. Retry on the next port if another process grabs ours meanwhile.
    local port=${EVENTBUS_PG_PORT:-54329} attempts=0 started=0
    while ((attempts < 20)); do
        while port_in_use "$port"; do
            log "postgres: port $port is in use, trying $((port + 1))"
            port=$((port + 1))
        done
        # Settings appended to postgresql.conf (later lines win), so the running config is
        # visible in one place: $data/postgresql.conf.
        {
            printf '\n# --- eventbus test settings (tests/lib/postgres.sh) ---\n'
            printf "listen_addresses = '127.0.0.1'\n"
            printf 'port = %d\n' "$port"
            printf "unix_socket_directories = '%s'\n" "$dir"
            printf 'max_connections = 200\n'
            printf 'shared_buffers = 256MB\n'
            printf 'fsync = on\n'
        } | _eventbus_pg_as_owner tee -a "$data/postgresql.conf" >/dev/null ||
            die "postgres: cannot write $data/postgresql.conf"
        log "postgres: starting on 127.0.0.1:$port (log $logf)"
        if _eventbus_pg_as_owner "$bin/pg_ctl" -D "$data" -l "$logf" -w -t 60 start >"$dir/pg_ctl.log" 2>&1; then
            started=1
            break
        fi
        if grep -qiE 'could not bind|address already in use' "$logf" 2>/dev/null; then
            log "postgres: port $port was taken while starting, trying another"
            port=$((port + 1))
            attempts=$((attempts + 1))
            continue
        fi
        cat "$dir/pg_ctl.log" >&2 || true
        _eventbus_pg_dump_log "$logf"
        die "postgres: pg_ctl start failed"
    done
    ((started)) || die "postgres: could not find a free port to start on"

    # 5. Wait until it accepts TCP connections, then create the database.
    local i
    for ((i = 0; i < 150; i++)); do
        "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -t 1 && break
        sleep 0.2
    done
    if ! "$bin/pg_isready" -h 127.0.0.1 -p "$port" -U postgres -t 5; then
        _eventbus_pg_dump_log "$logf"
        die "postgres: server started but pg_isready on 127.0.0.1:$port never succeeded"
    fi
    log "postgres: creating database $EVENTBUS_PG_DBNAME"
    if ! "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "create database \"$EVENTBUS_PG_DBNAME\""; then
        _eventbus_pg_dump_log "$logf"
        die "postgres: create database $EVENTBUS_PG_DBNAME failed"
    fi

    export EVENTBUS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/$EVENTBUS_PG_DBNAME"
    export EVENTBUS_PG_LOG=$logf
    _eventbus_pg_url_works "$EVENTBUS_TEST_DATABASE_URL" ||
        die "postgres: started, but 'select 1' fails on $EVENTBUS_TEST_DATABASE_URL"
    log "postgres: ready: EVENTBUS_TEST_DATABASE_URL=$EVENTBUS_TEST_DATABASE_URL"
}

postgres_stop() {
    [[ -n "${_EVENTBUS_PG_DIR:-}" ]] || return 0
    local dir=$_EVENTBUS_PG_DIR bin=$_EVENTBUS_PG_BIN
    if [[ -f "$dir/data/postmaster.pid" && -n "$bin" ]]; then
        log "postgres: stopping the server in $dir"
        if ! _eventbus_pg_as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >/dev/null; then
            log "postgres: pg_ctl stop failed; sending SIGQUIT to the postmaster"
            local pid
            pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null) || pid=""
            [[ "$pid" =~ ^[0-9]+$ ]] && kill -QUIT "$pid" 2>/dev/null
            sleep 1
        fi
    fi
    if [[ "${EVENTBUS_KEEP_LOGS:-0}" == 1 ]]; then
        log "postgres: keeping $dir (EVENTBUS_KEEP_LOGS=1)"
    elif [[ "$dir" == */eventbus-pg.* ]]; then
        rm -rf -- "$dir"
    fi
    _EVENTBUS_PG_DIR=""
    unset EVENTBUS_TEST_DATABASE_URL EVENTBUS_PG_LOG
    log "postgres: stopped"
}
