#!/usr/bin/env bash
# Checks the partner contract against the running inbound receiver:
#
#   1. builds the receiver and starts it twice on 127.0.0.1, once with AUTH_MODE=signature and
#      once with AUTH_MODE=bearer, publishing to a new topic on the Pub/Sub emulator;
#   2. runs every titled code example of docs/partners.md against them, as written
#      (tests/contract/examples.py);
#   3. runs schemathesis with docs/partner-api.yaml against the bearer receiver: no 5xx, no
#      status, header, content type or body outside the spec, every body that the request
#      schema accepts is accepted, and the receiver is still running at the end.
#
# tests/run.sh calls this script while the emulators are up. To run it alone, start the
# emulators (tests/emulators.sh) and export their variables first.
#
# Environment:
#   PUBSUB_EMULATOR_HOST    Pub/Sub emulator host:port (required)
#   GOOGLE_CLOUD_PROJECT    emulator project id (required)
#   ENRICHMENT_CACHE_DIR    cache of the Python environment (default ~/.cache/enrichment-webhooks)
#   CARGO_TARGET_DIR        Cargo's target directory (default $ENRICHMENT_CACHE_DIR/target)
#   CONTRACT_MAX_EXAMPLES   schemathesis test cases per phase and operation (default 200)
#   CONTRACT_SEED           schemathesis seed, to replay a run (default: random)
#   CONTRACT_TIMEOUT_SECS   time limit of the schemathesis run (default 600)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=tests/lib/common.sh
source tests/lib/common.sh

CONTRACT_DIR=tests/contract
OPENAPI_FILE=docs/partner-api.yaml
GUIDE_FILE=docs/partners.md
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-200}
TIMEOUT_SECS=${CONTRACT_TIMEOUT_SECS:-600}
# Seconds a receiver may take from start until GET /healthz returns 200.
STARTUP_TIMEOUT_SECS=30

export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}

[[ -n "${PUBSUB_EMULATOR_HOST:-}" ]] ||
    die "PUBSUB_EMULATOR_HOST is not set. Run tests/run.sh, or start tests/emulators.sh and export its variables."
[[ -n "${GOOGLE_CLOUD_PROJECT:-}" ]] ||
    die "GOOGLE_CLOUD_PROJECT is not set. Run tests/run.sh, or export the emulator project id."
require_command curl "The guide's examples use curl (Debian: curl)."
require_command openssl "The guide's examples sign with openssl (Debian: openssl)."
require_command cargo "Install Rust with rustup (https://rustup.rs)."

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/enrichment-contract.XXXXXX")
RECEIVER_PIDS=()

cleanup() {
    local status=$?
    set +e
    trap - EXIT
    local pid
    for pid in "${RECEIVER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    if ((status != 0)); then
        local log
        for log in "$WORK_DIR"/receiver-*.log; do
            [[ -f "$log" ]] || continue
            printf '\n--- last lines of %s\n' "$(basename "$log")"
            tail -n 40 "$log"
        done
    fi
    rm -rf "$WORK_DIR"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "Contract: build inbound-receiver"
cargo build -p inbound-receiver
RECEIVER_BIN=$CARGO_TARGET_DIR/debug/inbound-receiver
[[ -x "$RECEIVER_BIN" ]] || die "cargo build did not produce $RECEIVER_BIN"

step "Contract: Python environment"
mapfile -t packages < <(grep -Ev '^[[:space:]]*(#|$)' "$CONTRACT_DIR/requirements.txt")
ensure_venv contract "${packages[@]}"
CONTRACT_VENV=$VENV_DIR
"$CONTRACT_VENV/bin/st" --version

step "Contract: results topic and receivers"
TOPIC=contract-results-$("$PYTHON" -c 'import uuid; print(uuid.uuid4().hex[:12])')
curl --silent --show-error --fail --request PUT \
    "http://$PUBSUB_EMULATOR_HOST/v1/projects/$GOOGLE_CLOUD_PROJECT/topics/$TOPIC" >/dev/null ||
    die "creating topic $TOPIC on the Pub/Sub emulator at $PUBSUB_EMULATOR_HOST failed"
echo "topic: projects/$GOOGLE_CLOUD_PROJECT/topics/$TOPIC"

# Credentials made for this run only.
SIGNATURE_SECRET="whsec_$(openssl rand -base64 32)"
BEARER_TOKEN="contract-$(openssl rand -hex 24)"

# Starts the receiver with the given extra VAR=value settings and sets RECEIVER_URL. A port
# taken between free_port and the bind makes the receiver exit, so start-up is tried 3 times.
start_receiver() {
    local name=$1
    shift
    local attempt port pid log=$WORK_DIR/receiver-$name.log
    for attempt in 1 2 3; do
        port=$(free_port)
        env PORT="$port" BIND_ADDRESS=127.0.0.1 \
            PUBSUB_EMULATOR_HOST="$PUBSUB_EMULATOR_HOST" \
            GOOGLE_CLOUD_PROJECT="$GOOGLE_CLOUD_PROJECT" \
            PARTNER_ID=contract-partner RESULTS_TOPIC="$TOPIC" \
            LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}" \
            "$@" "$RECEIVER_BIN" >>"$log" 2>&1 &
        pid=$!
        local deadline=$((SECONDS + STARTUP_TIMEOUT_SECS))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            if curl --silent --fail --max-time 2 "http://127.0.0.1:$port/healthz" >/dev/null; then
                RECEIVER_PIDS+=("$pid")
                RECEIVER_URL=http://127.0.0.1:$port/
                echo "$name receiver: $RECEIVER_URL (pid $pid)"
                return 0
            fi
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            wait "$pid" 2>/dev/null || true
            die "the $name receiver did not answer GET /healthz within $STARTUP_TIMEOUT_SECS s (log: $log)"
        fi
        wait "$pid" 2>/dev/null || true
        echo "the $name receiver exited during start-up (attempt $attempt); retrying on another port"
    done
    tail -n 20 "$log" >&2
    die "the $name receiver failed to start 3 times"
}

start_receiver signature AUTH_MODE=signature WEBHOOK_SECRETS="$SIGNATURE_SECRET"
SIGNATURE_RECEIVER_URL=$RECEIVER_URL
start_receiver bearer AUTH_MODE=bearer BEARER_TOKENS="$BEARER_TOKEN"
BEARER_RECEIVER_URL=$RECEIVER_URL

step "Contract: examples of $GUIDE_FILE"
SIGNATURE_RECEIVER_URL=$SIGNATURE_RECEIVER_URL SIGNATURE_SECRET=$SIGNATURE_SECRET \
    BEARER_RECEIVER_URL=$BEARER_RECEIVER_URL BEARER_TOKEN=$BEARER_TOKEN \
    "$CONTRACT_VENV/bin/python" "$CONTRACT_DIR/examples.py" "$GUIDE_FILE"

step "Contract: schemathesis on $OPENAPI_FILE"
# The request schema describes the canonical form of each field, a subset of what the
# receiver accepts, because the receiver normalises before it validates (whitespace, phone
# separators, a missing URL scheme). So positive_data_acceptance runs, and
# negative_data_rejection is left out. Security parameters are not generated because the
# bearer token below authenticates every case, and ignored_auth checks that a request
# without it gets a 401.
seed_args=()
if [[ -n "${CONTRACT_SEED:-}" ]]; then
    seed_args=(--seed "$CONTRACT_SEED")
fi
# schemathesis and Hypothesis keep caches in the working directory, so it runs in WORK_DIR.
(cd "$WORK_DIR" && timeout --signal=INT "$TIMEOUT_SECS" \
    "$CONTRACT_VENV/bin/st" --no-color run "$REPO_ROOT/$OPENAPI_FILE" \
    --url "${BEARER_RECEIVER_URL%/}" \
    --header "Authorization: Bearer $BEARER_TOKEN" \
    --checks all \
    --exclude-checks negative_data_rejection \
    --max-examples "$MAX_EXAMPLES" \
    --generation-with-security-parameters false \
    --generation-database none \
    --request-timeout 10 \
    --workers 2 \
    --max-failures 20 \
    "${seed_args[@]}") ||
    die "schemathesis found responses that break $OPENAPI_FILE (see above), or timed out after $TIMEOUT_SECS s"

step "Contract: receivers still running"
for pid in "${RECEIVER_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || die "receiver pid $pid exited during the contract run"
done
if grep --no-filename --ignore-case 'panicked' "$WORK_DIR"/receiver-*.log; then
    die "a receiver panicked during the contract run (lines above)"
fi
echo "contract run passed"
