# shellcheck shell=bash
# tests/lib/deploy.sh -- offline checks of deploy/: Dockerfile, compose.yaml and k8s/.
#
# Source it (it sources common.sh itself); works whatever the caller's directory:
#
#   deploy_check   gofmt, go vet and go test -count=1 of deploy/validate (needs Go >= 1.25.5,
#                  and openssl for deploy/dev-certs.sh, installed when missing);
#                  what that checks and how long it takes: deploy/README.md
#
#   source tests/lib/deploy.sh
#   step "deploy: Dockerfile, compose, k8s (offline)" deploy_check

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

deploy_check() (
    set -euo pipefail
    local go gofmt unformatted
    go=$(find_go) || die "deploy: no Go toolchain found (need Go >= 1.25.5 on PATH)"
    gofmt=$(find_gofmt "$go") || die "deploy: gofmt not found next to $go or on PATH"

    # TestDevCertsScript runs deploy/dev-certs.sh, which makes its keys with openssl.
    command -v openssl >/dev/null 2>&1 || ensure_apt_packages openssl

    cd "$EVENTBUS_ROOT/deploy/validate"
    unformatted=$("$gofmt" -l .)
    [[ -z "$unformatted" ]] ||
        die "deploy: files not gofmt-ed (fix with: cd deploy/validate && gofmt -w .):"$'\n'"$unformatted"
    log "deploy: go vet + go test (deploy/ must pass; each defect case must fail the validator)"
    "$go" vet ./...
    # -count=1: the tests read deploy/ outside the Go module, which go test's cache does not track.
    "$go" test -count=1 ./...
)
