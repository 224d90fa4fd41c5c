#!/usr/bin/env bash
# The one test entry point (README, CI). Installs what a fresh machine lacks (Rust components,
# PostgreSQL and Chromium from Debian, buf, the Go protoc plugins, a Python venv), then runs
# every check and suite; exits non-zero on the first failure. Idempotent: tools are cached in .tools/ and .venv/,
# throwaway services (Postgres) are stopped on exit. Nothing is skipped: a missing Postgres
# fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh
source tests/lib/postgres.sh
source tests/lib/codegen.sh
source tests/lib/server.sh
source tests/lib/go_client.sh
source tests/lib/python_client.sh
source tests/lib/http_ingress.sh
source tests/lib/trace.sh
source tests/lib/console.sh
source tests/lib/deploy.sh
source tests/lib/docs.sh

trap run_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rust_toolchain() {
    local have
    have=$(rustup component list --installed 2>/dev/null || true)
    grep -q '^rustfmt' <<<"$have" || rustup component add rustfmt
    grep -q '^clippy' <<<"$have" || rustup component add clippy
    cargo --version
}

tools() {
    # Headless Chromium and its driver for the console's browser test.
    ensure_apt_packages chromium chromium-driver
    ensure_buf
    ensure_go_plugins
    ensure_venv
}

step "rust toolchain" rust_toolchain
step "tools: buf, Go plugins, Python venv" tools
step "postgres (throwaway cluster)" postgres_start
step "proto: buf lint, format, breaking" proto_check
step "generated Go and Python code is up to date" codegen_check
step "clients: go build/vet, python imports" clients_check
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy (warnings denied)" cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
step "engine pure core without the store" cargo test -p eventbus-engine --no-default-features --lib --locked
step "cargo test (SQLite and Postgres)" cargo test --workspace --all-features --locked
step "build the eventbus binary" build_server
step "deploy: Dockerfile, compose, k8s (offline)" deploy_check
step "traces in a real Jaeger, metrics endpoint" trace_tests
step "web console in headless Chromium (Selenium)" console_tests
step "Go client: vet, unit and integration tests" go_client_tests
step "Python client: mypy, unit and integration tests" python_client_tests
step "HTTP ingress: CloudEvents SDKs (Python, Go) and curl" http_ingress_tests
step "eventbus server for the examples" server_start
step "Go example: thousands of orders started and woken" go_example
step "Python example: thousands of orders started and woken" python_example
step "README code blocks: shell, Rust, Go, Python" docs_check

printf '\nall checks passed\n'
