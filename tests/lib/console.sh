# shellcheck shell=bash
# tests/lib/console.sh -- the web console in a real browser: headless Chromium from Debian,
# driven by Selenium (tests/console/test_console.py), against a real `eventbus serve`.
#
#   console_tests   ensure_venv (selenium is in client/python/requirements-dev.txt) and the
#                   Debian chromium and chromium-driver packages, then mypy and pytest over
#                   tests/console; the test starts `$EVENTBUS_BIN serve` itself. Screenshots of
#                   each step go to $EVENTBUS_CONSOLE_ARTIFACTS (default
#                   /tmp/eventbus-console-artifacts). EVENTBUS_BIN must be set (build_server).

source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
source "$(dirname "${BASH_SOURCE[0]}")/codegen.sh"

console_tests() (
    set -euo pipefail
    [[ -x "${EVENTBUS_BIN:-}" ]] || die "console_tests: EVENTBUS_BIN is not set (run build_server first)"
    ensure_apt_packages chromium chromium-driver
    ensure_venv
    cd "$EVENTBUS_ROOT"
    export EVENTBUS_CONSOLE_ARTIFACTS=${EVENTBUS_CONSOLE_ARTIFACTS:-/tmp/eventbus-console-artifacts}
    rm -rf "$EVENTBUS_CONSOLE_ARTIFACTS"
    .venv/bin/mypy --config-file client/python/pyproject.toml tests/console
    run_pytest "console tests" tests/console || die "console tests failed (screenshots: $EVENTBUS_CONSOLE_ARTIFACTS)"
    log "console tests: screenshots in $EVENTBUS_CONSOLE_ARTIFACTS"
)
