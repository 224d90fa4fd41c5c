# shellcheck shell=bash
# tests/lib/codegen.sh -- the proto contract's tooling and the generated Go / Python clients.
#
# Source it (it sources common.sh itself); every function works from the repository root
# whatever the caller's directory, and returns non-zero on failure:
#
#   ensure_buf          buf $EVENTBUS_BUF_VERSION in .tools/npm (npm), unless already there
#   ensure_go_plugins   protoc-gen-go and protoc-gen-go-grpc at the pinned versions in .tools/bin
#                       (go install), unless already there
#   ensure_venv         .venv (python3) with client/python/requirements-dev.txt and the Python
#                       client (pip install -e client/python); reinstalls only when either of
#                       those files changed since the last install (stamp in .venv)
#   proto_check         buf lint, buf format -d --exit-code, and buf breaking against branch
#                       main once main has a buf.yaml
#   codegen             removes the old generated code, then buf generate (buf.gen.yaml):
#                       client/go/gen/eventbus/v1/*.go and client/python/src/eventbus/v1/*_pb2*
#   codegen_check       codegen, then fails if the generated code differs from git (modified,
#                       deleted or untracked files)
#   clients_check       go build + go vet of client/go; imports every generated Python module
#
#   source tests/lib/codegen.sh
#   step "proto" proto_check
#   step "codegen up to date" codegen_check
#
# Tools live in .tools/ and .venv/ (both gitignored). Only the ensure_* functions touch the
# network; lint, format, breaking and generate run offline (buf.yaml has no deps, buf.gen.yaml
# uses local plugins only). Each function body runs in a subshell with `set -euo pipefail`,
# so it stops at the first failing command even when the caller has no `set -e` (unless the
# caller invokes it as an `if` / `&&` / `||` condition, where bash ignores -e).

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

: "${EVENTBUS_BUF_VERSION:=1.75.0}"
: "${EVENTBUS_PROTOC_GEN_GO_VERSION:=v1.36.11}"
: "${EVENTBUS_PROTOC_GEN_GO_GRPC_VERSION:=v1.6.2}"

# Generated output, relative to the repository root. The Python stubs share client/python/src
# with hand-written code, so they are removed by file name, never by directory.
_EVENTBUS_GO_GEN_DIR=client/go/gen
_EVENTBUS_PY_GEN_DIR=client/python/src/eventbus/v1
_EVENTBUS_BUF=.tools/npm/node_modules/.bin/buf

ensure_buf() (
    set -euo pipefail
    cd "$EVENTBUS_ROOT"
    local got
    got=$("$_EVENTBUS_BUF" --version 2>/dev/null) || got=""
    if [[ "$got" == "$EVENTBUS_BUF_VERSION" ]]; then
        log "codegen: buf $got present ($_EVENTBUS_BUF)"
        return 0
    fi
    command -v npm >/dev/null 2>&1 || die "codegen: npm is needed to install buf $EVENTBUS_BUF_VERSION"
    log "codegen: installing buf $EVENTBUS_BUF_VERSION: npm install --prefix .tools/npm @bufbuild/buf@$EVENTBUS_BUF_VERSION"
    mkdir -p .tools/npm
    npm install --prefix .tools/npm --no-audit --no-fund --loglevel=error "@bufbuild/buf@$EVENTBUS_BUF_VERSION"
    got=$("$_EVENTBUS_BUF" --version)
    [[ "$got" == "$EVENTBUS_BUF_VERSION" ]] ||
        die "codegen: expected buf $EVENTBUS_BUF_VERSION, $_EVENTBUS_BUF reports $got"
    log "codegen: buf $got installed"
)

ensure_go_plugins() (
    set -euo pipefail
    cd "$EVENTBUS_ROOT"
    local go
    go=$(find_go) || die "codegen: no Go toolchain found (need Go >= 1.24 on PATH)"
    mkdir -p .tools/bin
    # name, package, version, what `name --version` prints for that version
    local name pkg version want got
    while read -r name pkg version want; do
        got=$(".tools/bin/$name" --version 2>/dev/null) || got=""
        if [[ "$got" == "$want" ]]; then
            log "codegen: $name $version present (.tools/bin/$name)"
            continue
        fi
        log "codegen: installing $name $version: GOBIN=.tools/bin go install $pkg@$version"
        GOBIN="$EVENTBUS_ROOT/.tools/bin" "$go" install "$pkg@$version"
        got=$(".tools/bin/$name" --version)
        [[ "$got" == "$want" ]] || die "codegen: expected '$want', .tools/bin/$name reports '$got'"
    done <<EOF
protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go $EVENTBUS_PROTOC_GEN_GO_VERSION protoc-gen-go $EVENTBUS_PROTOC_GEN_GO_VERSION
protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc $EVENTBUS_PROTOC_GEN_GO_GRPC_VERSION protoc-gen-go-grpc ${EVENTBUS_PROTOC_GEN_GO_GRPC_VERSION#v}
EOF
)

ensure_venv() (
    set -euo pipefail
    cd "$EVENTBUS_ROOT"
    local req=client/python/requirements-dev.txt
    local stamp=.venv/.eventbus-requirements.sha256
    local want
    want=$(sha256sum "$req" client/python/pyproject.toml)
    if [[ ! -x .venv/bin/python ]]; then
        log "codegen: creating .venv with $(python3 --version)"
        python3 -m venv .venv
    fi
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        log "codegen: .venv up to date ($req and client/python/pyproject.toml unchanged)"
        return 0
    fi
    rm -f "$stamp"
    log "codegen: .venv: pip install -r $req"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
    log "codegen: .venv: pip install -e client/python"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e client/python
    printf '%s\n' "$want" >"$stamp"
)

proto_check() (
    set -euo pipefail
    ensure_buf
    cd "$EVENTBUS_ROOT"
    log "codegen: buf lint"
    "$_EVENTBUS_BUF" lint
    log "codegen: buf format -d --exit-code"
    "$_EVENTBUS_BUF" format -d --exit-code ||
        die "codegen: proto files are not buf-formatted; fix with: $_EVENTBUS_BUF format -w"
    if git rev-parse --verify --quiet 'main:buf.yaml' >/dev/null; then
        log "codegen: buf breaking --against '.git#branch=main'"
        "$_EVENTBUS_BUF" breaking --against '.git#branch=main'
    else
        log "codegen: buf breaking skipped: branch main has no buf.yaml yet"
    fi
)

codegen() (
    set -euo pipefail
    ensure_buf
    ensure_go_plugins
    ensure_venv
    cd "$EVENTBUS_ROOT"
    log "codegen: removing old generated code ($_EVENTBUS_GO_GEN_DIR, $_EVENTBUS_PY_GEN_DIR/*_pb2*)"
    rm -rf "$_EVENTBUS_GO_GEN_DIR"
    if [[ -d "$_EVENTBUS_PY_GEN_DIR" ]]; then
        find "$_EVENTBUS_PY_GEN_DIR" -type f \
            \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' \) -delete
    fi
    log "codegen: buf generate"
    "$_EVENTBUS_BUF" generate
    local files
    files=$(find "$_EVENTBUS_GO_GEN_DIR" "$_EVENTBUS_PY_GEN_DIR" -type f \
        \( -name '*.go' -o -name '*_pb2*' \) | sort)
    [[ -n "$files" ]] || die "codegen: buf generate produced no files"
    log "codegen: generated $(wc -l <<<"$files") files:"
    printf '  %s\n' $files >&2
)

codegen_check() (
    set -euo pipefail
    codegen
    cd "$EVENTBUS_ROOT"
    log "codegen: comparing the generated code with git"
    local stale=0 untracked
    git diff --exit-code --stat -- "$_EVENTBUS_GO_GEN_DIR" "$_EVENTBUS_PY_GEN_DIR" >&2 || stale=1
    untracked=$(git ls-files --others --exclude-standard -- "$_EVENTBUS_GO_GEN_DIR" "$_EVENTBUS_PY_GEN_DIR")
    if [[ -n "$untracked" ]]; then
        log "codegen: generated files unknown to git:"
        printf '  %s\n' $untracked >&2
        stale=1
    fi
    ((stale == 0)) ||
        die "codegen: the committed generated code does not match proto/; run 'source tests/lib/codegen.sh && codegen' and commit $_EVENTBUS_GO_GEN_DIR and $_EVENTBUS_PY_GEN_DIR"
    log "codegen: generated code matches proto/"
)

clients_check() (
    set -euo pipefail
    ensure_venv
    local go
    go=$(find_go) || die "codegen: no Go toolchain found (need Go >= 1.24 on PATH)"
    cd "$EVENTBUS_ROOT/client/go"
    log "codegen: client/go: go build ./... && go vet ./..."
    "$go" build ./...
    "$go" vet ./...
    cd "$EVENTBUS_ROOT"
    log "codegen: client/python: importing every eventbus.v1 module"
    .venv/bin/python - <<'EOF'
import importlib
import pkgutil

import eventbus.v1

names = sorted(m.name for m in pkgutil.iter_modules(eventbus.v1.__path__, "eventbus.v1."))
if not names:
    raise SystemExit("no generated modules in eventbus.v1: run codegen")
for name in names:
    importlib.import_module(name)
print("[eventbus] codegen: imported " + " ".join(names))
EOF
)
