#!/usr/bin/env bash
# Runs every check of the repository: formatting, Clippy, the emulators, the Rust tests, and
# the Terraform and contract checks when their scripts exist. CI runs exactly this script.
#
# Usage: tests/run.sh [--no-lint] [-- CARGO_TEST_ARGS...]
#
#   --no-lint    skip cargo fmt and cargo clippy, for quick local runs
#   -- ARGS      pass ARGS to `cargo test --workspace --no-fail-fast`: for example
#                `-- pubsub` runs only the tests whose names contain "pubsub", and
#                `-- -- --nocapture` shows their output
#
# Environment:
#   ENRICHMENT_CACHE_DIR  cache for the Python environments and the Cargo target directory
#                         (default: ~/.cache/enrichment-webhooks)
#   CARGO_TARGET_DIR      Cargo's target directory (default: $ENRICHMENT_CACHE_DIR/target)
#   RUST_LOG              log filter for the code under test (default: warn)
#
# The emulators bind 127.0.0.1 on ports picked at run time, so several runs can share a
# machine. Their logs are printed when the run fails, and they are stopped on exit.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=tests/lib/common.sh
source tests/lib/common.sh
# shellcheck source=tests/lib/emulators.sh
source tests/lib/emulators.sh

# Later steps plug in here: each runs when its script is in the repository.
TERRAFORM_CHECK_SCRIPT=tests/terraform/check.sh
CONTRACT_TEST_SCRIPT=tests/contract/run.sh

usage() {
    sed -n '2,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

lint=1
cargo_test_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --no-lint)
        lint=0
        shift
        ;;
    --)
        shift
        cargo_test_args=("$@")
        break
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown option: $1 (see tests/run.sh --help)"
        ;;
    esac
done

export ENRICHMENT_CACHE_DIR=$CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}

# One line per step for the summary printed at exit, and the step now running, which the
# summary marks as failed when the run stops inside it.
summary=()
current_step=""

begin() {
    current_step=$1
}

record() {
    summary+=("$(printf '%-22s %s' "$1" "$2")")
    current_step=""
}

RUN_DIR=$(mktemp -d "${TMPDIR:-/tmp}/enrichment-tests.XXXXXX")

cleanup() {
    local status=$?
    set +e
    # A second Ctrl-C must not interrupt the clean-up and leave emulators running.
    trap - EXIT
    trap '' INT TERM
    if ((status != 0)); then
        print_emulator_logs 60
        if [[ -n "$current_step" ]]; then
            record "$current_step" "FAILED"
        fi
    fi
    stop_emulators
    rm -rf "$RUN_DIR"

    printf '\n==> Summary\n'
    if ((${#summary[@]} > 0)); then
        printf '%s\n' "${summary[@]}"
    fi
    if ((status == 0)); then
        echo "tests/run.sh: all steps passed"
    else
        echo "tests/run.sh: failed with exit status $status"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

check_prerequisites() {
    begin "prerequisites"
    step "Prerequisites"
    require_command cargo "Install Rust with rustup (https://rustup.rs)."
    require_command "$PYTHON" "Install Python 3.11 or newer with the venv module, or set PYTHON."
    # Fails now, not after the build, when the Pub/Sub emulator or Java is missing.
    require_command java "The Pub/Sub emulator needs Java 11 or newer (Debian: openjdk-17-jre-headless)."
    find_pubsub_emulator >/dev/null
    echo "$(cargo --version), $("$PYTHON" --version 2>&1), $(java -version 2>&1 | head -n 1)"
    echo "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"
    if ((lint)); then
        cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing: rustup component add rustfmt"
        cargo clippy --version >/dev/null 2>&1 || die "Clippy is missing: rustup component add clippy"
    fi
    record "prerequisites" "found"
}

run_lint() {
    if ((!lint)); then
        record "cargo fmt" "skipped (--no-lint)"
        record "cargo clippy" "skipped (--no-lint)"
        return 0
    fi

    begin "cargo fmt"
    step "cargo fmt --all --check"
    cargo fmt --all --check
    record "cargo fmt" "passed"

    begin "cargo clippy"
    step "cargo clippy --workspace --all-targets -- -D warnings"
    cargo clippy --workspace --all-targets -- -D warnings
    record "cargo clippy" "passed"
}

run_emulators() {
    begin "emulators"
    step "Emulators: install and start (Pub/Sub, Cloud Storage, BigQuery)"
    install_emulators
    start_emulators

    # shellcheck source=/dev/null
    source "$RUN_DIR/env"
    export RUST_LOG=${RUST_LOG:-warn}
    echo "Test environment:"
    sed 's/^export /  /' "$RUN_DIR/env"
    echo "  RUST_LOG=$RUST_LOG"
    record "emulators" "started"
}

run_cargo_tests() {
    begin "cargo test"
    # --no-fail-fast runs every test binary, so one run reports every failing test.
    step "cargo test --workspace --no-fail-fast ${cargo_test_args[*]}"
    cargo test --workspace --no-fail-fast "${cargo_test_args[@]}"
    record "cargo test" "passed"
}

# Runs SCRIPT with bash when it exists and records the outcome under LABEL. A missing script
# is reported as not run, never as passed.
run_optional_step() {
    local label=$1 script=$2
    if [[ ! -f "$script" ]]; then
        step "$label: not run ($script is not in the repository)"
        record "$label" "NOT RUN: $script is not in the repository"
        return 0
    fi
    begin "$label"
    step "$label ($script)"
    bash "$script"
    record "$label" "passed"
}

# Hook: Terraform formatting, static analysis and structure checks.
run_terraform_checks() {
    run_optional_step "terraform checks" "$TERRAFORM_CHECK_SCRIPT"
}

# Hook: the schemathesis contract run against the HTTP functions. It runs while the emulators
# are up and their variables are exported.
run_contract_tests() {
    run_optional_step "contract tests" "$CONTRACT_TEST_SCRIPT"
}

check_prerequisites
run_lint
run_emulators
run_cargo_tests
run_terraform_checks
run_contract_tests
