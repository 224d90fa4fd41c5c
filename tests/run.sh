#!/usr/bin/env bash
# The one test entry point (README, CI). Installs what a fresh machine lacks, then runs every
# check and suite; exits non-zero on the first failure. Idempotent: tools are cached in .tools/
# and .venv/, throwaway services are stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
source tests/lib/common.sh

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

step "rust toolchain" rust_toolchain
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy (warnings denied)" cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test" cargo test --workspace --locked

printf '\nall checks passed\n'
