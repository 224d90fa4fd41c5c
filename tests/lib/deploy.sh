# shellcheck shell=bash
# tests/lib/deploy.sh -- offline checks of deploy/: Dockerfile, compose.yaml and k8s/.
#
# Source it (it sources common.sh itself); works from the repository root whatever the
# caller's directory, and returns non-zero on failure:
#
#   deploy_check   gofmt + go vet + go test of deploy/validate (its tests break each file in a
#                  copy of deploy/ and require the failure: a misspelled Kubernetes field, a
#                  probe that is not grpc, a literal database URL, a compose key the schema
#                  does not know, a root USER, a Dockerfile lint finding, ...); then builds the
#                  validator into .tools/bin/eventbus-deploy-validate and runs it on deploy/:
#                    - k8s/: `kustomize build` (the kustomize library that `kubectl apply -k`
#                      uses) and every document strict-decoded into the typed Kubernetes API
#                      (k8s.io/api: unknown, misspelled or duplicate fields and wrong types
#                      fail), then the rules the deployment relies on (replicas, grpc probes,
#                      non-root, read-only root, dropped capabilities, resources, the database
#                      URL from a Secret that has the key, Service and PDB selecting the pods)
#                    - compose.yaml: loaded by compose-go, the loader `docker compose` uses
#                      (compose-spec schema, interpolation of the defaults, references), then
#                      the wiring (Postgres with a health check behind service_healthy, OTLP to
#                      the Jaeger service, the database URL matching the Postgres service)
#                    - Dockerfile: BuildKit's Dockerfile frontend lint (the rules of
#                      `docker build --check`; base images are not pulled), then the runtime
#                      stage (numeric non-root USER, EXPOSE 50051 9464, 0.0.0.0 listen, SQLite
#                      file in a VOLUME, exec-form HEALTHCHECK `eventbus health`)
#                    - that the three agree on ports, user and health check
#
#   source tests/lib/deploy.sh
#   step "deploy: Dockerfile, compose, k8s (offline)" deploy_check
#
# Needs the Go toolchain (>= 1.25.5); the first run downloads the validator's modules through
# the Go proxy and compiles them (about a minute on 2 cores), later runs reuse the module and
# build caches and the cached test result. Nothing here needs a Docker engine or a cluster:
# no image is built and nothing is applied (see deploy/README.md).

# shellcheck source=tests/lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

deploy_check() (
    set -euo pipefail
    local go gofmt unformatted
    go=$(find_go) || die "deploy: no Go toolchain found (need Go >= 1.25.5 on PATH)"
    gofmt=$(find_gofmt "$go") || die "deploy: gofmt not found next to $go or on PATH"

    cd "$EVENTBUS_ROOT/deploy/validate"
    unformatted=$("$gofmt" -l .)
    [[ -z "$unformatted" ]] ||
        die "deploy: files not gofmt-ed (fix with: cd deploy/validate && gofmt -w .):"$'\n'"$unformatted"
    log "deploy: go vet + go test (deploy/ must pass; each defect case must fail the validator)"
    "$go" vet ./...
    # -count=1: the tests read deploy/ outside the Go module, which go test's cache does not track.
    "$go" test -count=1 ./...
)
