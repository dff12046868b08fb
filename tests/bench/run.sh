#!/usr/bin/env bash
# Benchmarks the inbound receiver, the outbound sender and the results sink on this machine,
# in one run that installs its load tool, builds release binaries, starts the emulators it
# needs on 127.0.0.1, and stops everything it started, by PID, when it ends.
#
# Usage: tests/bench/run.sh [--only receiver|sender|sink] [--out DIR] [--load-secs N]
#
#   --only PART     run one part; repeat the option to run several (default: all three)
#   --out DIR       folder for the reports (default: $ENRICHMENT_CACHE_DIR/bench/<UTC time>)
#   --load-secs N   seconds of load per receiver measurement (default: 10)
#
# What it measures (BENCHMARKS.md explains each figure and what limits it):
#   receiver  requests per second and p50/p99 latency at concurrency 1, 16 and 64 with oha,
#             against (a) the receiver with an in-memory publisher, (b) the receiver binary
#             with the Pub/Sub emulator and (c) a bare axum server, the ceiling; p99 at a fixed
#             1000 requests per second on (a); idle and loaded RSS; time from process start to
#             the first 200. Every request is signed with Standard Webhooks (AUTH_MODE=signature)
#             and carries the payload in tests/bench/payload.json.
#   sender    emails per second and peak RSS to parse and enqueue 1 M-line CSV, NDJSON and
#             gzipped files with the queue stubbed; pacing of the local queue over 200 requests
#             at 20 per second against a partner server on 127.0.0.1.
#   sink      rows per second at concurrency 64 with micro-batching (BATCH_MAX_ROWS=500) and
#             with one insert per message (BATCH_MAX_ROWS=1), into an in-memory warehouse and
#             into the BigQuery emulator.
#
# Environment:
#   ENRICHMENT_CACHE_DIR  cache for oha, the Python environments and the Cargo target directory
#                         (default: ~/.cache/enrichment-webhooks)
#   CARGO_TARGET_DIR      Cargo's target directory (default: $ENRICHMENT_CACHE_DIR/target)
#
# The summary is printed at the end and written to OUT/summary.md; the raw reports (oha JSON,
# the examples' JSON lines, server logs) stay in OUT.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO_ROOT"
# shellcheck source=tests/lib/common.sh
source tests/lib/common.sh
# shellcheck source=tests/lib/emulators.sh
source tests/lib/emulators.sh

BENCH_DIR="$REPO_ROOT/tests/bench"
HELPERS="$BENCH_DIR/helpers.py"
PAYLOAD="$BENCH_DIR/payload.json"

# oha is built from crates.io once and kept in the cache. The version is pinned because the
# script reads oha's JSON report.
OHA_VERSION=1.16.0
OHA_ROOT="$CACHE/bin/oha-$OHA_VERSION"
OHA="$OHA_ROOT/bin/oha"

CONCURRENCY_LEVELS=(1 16 64)
WARMUP_SECS=2
FIXED_RATE=1000
FIXED_RATE_SECS=10
# Test-only secret for the signed requests: whsec_ followed by base64 of 24 random bytes.
WEBHOOK_SECRET="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
LOG_HASH_KEY_VALUE="bench-log-hash-key-0123456789"
PARTNER_ID=bench-partner
RESULTS_TOPIC=bench-results

SINK_CONCURRENCY=64
# Bounds of each sink run: whichever comes first.
SINK_MESSAGES=20000
SINK_MAX_SECS=15

PACING_REQUESTS=200
PACING_INTERVAL_MS=50
PARSE_LINES=1000000

usage() {
    sed -n '2,33s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

parts=()
OUT=""
LOAD_SECS=10
while [[ $# -gt 0 ]]; do
    case $1 in
    --only)
        [[ $# -ge 2 ]] || die "--only needs receiver, sender or sink"
        case $2 in
        receiver | sender | sink) parts+=("$2") ;;
        *) die "--only takes receiver, sender or sink, not $2" ;;
        esac
        shift 2
        ;;
    --out)
        [[ $# -ge 2 ]] || die "--out needs a folder"
        OUT=$2
        shift 2
        ;;
    --load-secs)
        [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || die "--load-secs needs a whole number of seconds"
        LOAD_SECS=$2
        shift 2
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown option: $1"
        ;;
    esac
done
if ((${#parts[@]} == 0)); then
    parts=(receiver sender sink)
fi

export ENRICHMENT_CACHE_DIR=$CACHE
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
RELEASE_DIR="$CARGO_TARGET_DIR/release"
OUT=${OUT:-$CACHE/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT/logs"
OUT=$(cd "$OUT" && pwd)
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"
# The emulator helpers keep their logs, data and process list here.
RUN_DIR="$OUT/emulators"
mkdir -p "$RUN_DIR"

# Servers started by this script: "PID start-time" pairs, stopped by PID at exit.
started_servers=()

cleanup() {
    local status=$?
    set +e
    trap - EXIT
    trap '' INT TERM
    local entry pid start
    for entry in "${started_servers[@]}"; do
        read -r pid start <<<"$entry"
        stop_server "$pid" "$start"
    done
    stop_emulators
    if ((status != 0)); then
        echo "tests/bench/run.sh failed with exit status $status; logs are in $OUT/logs" >&2
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Appends one JSON object to the results file.
record_result() {
    printf '%s\n' "$1" >>"$RESULTS"
}

# ---------------------------------------------------------------------------------------------
# Set-up
# ---------------------------------------------------------------------------------------------

install_oha() {
    if [[ -x "$OHA" ]]; then
        return 0
    fi
    step "Installing oha $OHA_VERSION from crates.io into $OHA_ROOT (once; about 5 minutes)"
    # A temporary target directory of its own, so that the build neither fills nor locks the
    # workspace's target directory.
    env -u CARGO_TARGET_DIR cargo install --locked --quiet oha --version "$OHA_VERSION" \
        --root "$OHA_ROOT" || die "installing oha $OHA_VERSION with cargo install failed"
}

describe_machine() {
    local cpu memory_kb
    cpu=$(grep -m 1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
    memory_kb=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
    {
        echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "nproc: $(nproc)"
        echo "cpu: $cpu"
        echo "memory: $((memory_kb / 1024)) MiB"
        echo "kernel: $(uname -r)"
        echo "rustc: $(rustc --version)"
        echo "oha: $("$OHA" --version)"
        echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    } | tee "$OUT/machine.txt"
}

build_release() {
    step "Building release binaries"
    local -a targets=()
    local part
    for part in "${parts[@]}"; do
        case $part in
        receiver)
            targets+=(-p inbound-receiver --bin inbound-receiver --example bench_receiver
                --example bench_ceiling)
            ;;
        sender) targets+=(-p outbound-sender --example bench_parse --example bench_pacing) ;;
        sink) targets+=(-p results-sink --example bench_sink) ;;
        esac
    done
    cargo build --release --quiet "${targets[@]}"
}

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------

# Starts NAME as ENV... BINARY in the background with its logs in $OUT/logs/NAME.log (standard
# output, the JSON request logs, goes to /dev/null: at tens of thousands of requests per
# second it would fill the disk). Leaves the PID in SERVER_PID.
start_server() {
    local name=$1
    shift
    env "$@" >/dev/null 2>>"$OUT/logs/$name.log" </dev/null &
    SERVER_PID=$!
    started_servers+=("$SERVER_PID $(process_start_time "$SERVER_PID")")
}

# Stops the server PID with SIGTERM (SIGKILL after 10 s) when it is still the process that
# started at START.
stop_server() {
    local pid=$1 start=$2
    [[ -n "$start" && "$(process_start_time "$pid")" == "$start" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    local deadline=$((SECONDS + 10))
    while ((SECONDS < deadline)) && [[ "$(process_start_time "$pid")" == "$start" ]]; do
        sleep 0.1
    done
    if [[ "$(process_start_time "$pid")" == "$start" ]]; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

stop_last_servers() {
    local entry pid start
    for entry in "$@"; do
        read -r pid start <<<"$entry"
        stop_server "$pid" "$start"
    done
}

# Waits until 127.0.0.1:PORT accepts connections, for at most 30 s.
wait_for_port() {
    local port=$1 pid=$2 deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        [[ -n "$(process_start_time "$pid")" ]] || die "the server on port $port exited; see $OUT/logs"
        sleep 0.05
    done
    die "nothing listens on 127.0.0.1:$port after 30 s; see $OUT/logs"
}

# Prints the field FIELD (VmRSS or VmHWM) of process PID in KiB.
memory_kb() {
    awk -v field="$2:" '$1 == field {print $2}' "/proc/$1/status"
}

# ---------------------------------------------------------------------------------------------
# Receiver
# ---------------------------------------------------------------------------------------------

# The receiver's environment, without the Pub/Sub emulator.
receiver_env() {
    local port=$1
    printf '%s\n' "PORT=$port" BIND_ADDRESS=127.0.0.1 GOOGLE_CLOUD_PROJECT="$EMULATOR_PROJECT" \
        PARTNER_ID="$PARTNER_ID" RESULTS_TOPIC="$RESULTS_TOPIC" AUTH_MODE=signature \
        WEBHOOK_SECRETS="$WEBHOOK_SECRET" LOG_HASH_KEY="$LOG_HASH_KEY_VALUE" RUST_LOG=info \
        LOG_FORMAT=json
}

# Runs oha against 127.0.0.1:PORT with signed requests and writes its JSON report to FILE.
# OHA_ARGS... are the load options (-z, -c, -q).
run_oha() {
    local port=$1 file=$2
    shift 2
    local -a headers=()
    local line
    while IFS= read -r line; do
        headers+=(-H "$line")
    done < <("$PYTHON" "$HELPERS" sign "$WEBHOOK_SECRET" "$PAYLOAD")
    # -w lets the requests in flight at the deadline finish instead of counting them as
    # aborted.
    "$OHA" --no-tui --output-format json -w -m POST -T application/json -D "$PAYLOAD" \
        "${headers[@]}" "$@" "http://127.0.0.1:$port/" >"$file"
}

# Measures one server at one concurrency and records the result under TARGET.
measure_load() {
    local target=$1 port=$2 concurrency=$3
    local file="$OUT/receiver-$target-c$concurrency.json" summary
    run_oha "$port" "$file" -z "${LOAD_SECS}s" -c "$concurrency"
    summary=$("$PYTHON" "$HELPERS" oha-summary "$file")
    echo "  $target, concurrency $concurrency: $summary"
    record_result "{\"kind\":\"receiver-load\",\"target\":\"$target\",\"concurrency\":$concurrency,\"load_avg\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"oha\":$summary}"
}

record_memory() {
    local target=$1 pid=$2 idle_kb=$3
    local loaded_kb peak_kb
    loaded_kb=$(memory_kb "$pid" VmRSS)
    peak_kb=$(memory_kb "$pid" VmHWM)
    echo "  $target RSS: idle $idle_kb KiB, after load $loaded_kb KiB, peak $peak_kb KiB"
    record_result "{\"kind\":\"rss\",\"target\":\"$target\",\"idle_kb\":$idle_kb,\"loaded_kb\":$loaded_kb,\"peak_kb\":$peak_kb}"
}

measure_startup() {
    local target=$1
    shift
    local port summary
    port=$(free_port)
    local -a env_args=()
    mapfile -t env_args < <(receiver_env "$port")
    summary=$("$PYTHON" "$HELPERS" first-200 --port "$port" --body "$PAYLOAD" \
        --secret "$WEBHOOK_SECRET" --runs 5 -- env "${env_args[@]}" "$@" 2>>"$OUT/logs/startup-$target.log")
    echo "  $target, start to first 200: $summary"
    record_result "{\"kind\":\"startup\",\"target\":\"$target\",\"result\":$summary}"
}

bench_receiver_memory_and_ceiling() {
    step "Receiver: in-memory publisher (a) against the bare axum ceiling (c)"
    local memory_port ceiling_port memory_pid ceiling_pid memory_idle ceiling_idle
    local -a env_args=()
    memory_port=$(free_port)
    mapfile -t env_args < <(receiver_env "$memory_port")
    start_server receiver-memory "${env_args[@]}" "$RELEASE_DIR/examples/bench_receiver"
    memory_pid=$SERVER_PID
    ceiling_port=$(free_port)
    start_server ceiling PORT="$ceiling_port" BIND_ADDRESS=127.0.0.1 \
        "$RELEASE_DIR/examples/bench_ceiling"
    ceiling_pid=$SERVER_PID
    wait_for_port "$memory_port" "$memory_pid"
    wait_for_port "$ceiling_port" "$ceiling_pid"

    sleep 1
    memory_idle=$(memory_kb "$memory_pid" VmRSS)
    ceiling_idle=$(memory_kb "$ceiling_pid" VmRSS)

    # Warm-up: connections, allocator pools and the CPU caches.
    run_oha "$ceiling_port" "$OUT/warmup-ceiling.json" -z "${WARMUP_SECS}s" -c 16
    run_oha "$memory_port" "$OUT/warmup-memory.json" -z "${WARMUP_SECS}s" -c 16

    # The ceiling and the receiver take turns at each concurrency, so that load from other
    # processes on the machine affects both alike.
    local concurrency
    for concurrency in "${CONCURRENCY_LEVELS[@]}"; do
        measure_load ceiling "$ceiling_port" "$concurrency"
        measure_load memory "$memory_port" "$concurrency"
    done
    record_memory memory "$memory_pid" "$memory_idle"
    record_memory ceiling "$ceiling_pid" "$ceiling_idle"

    step "Receiver: p99 at a fixed $FIXED_RATE requests per second, in-memory publisher"
    local file="$OUT/receiver-memory-rate$FIXED_RATE.json" summary
    # --latency-correction measures from each request's scheduled start, so a stall also
    # counts against the requests that queued behind it.
    run_oha "$memory_port" "$file" -z "${FIXED_RATE_SECS}s" -c 16 -q "$FIXED_RATE" \
        --latency-correction
    summary=$("$PYTHON" "$HELPERS" oha-summary "$file")
    echo "  fixed rate: $summary"
    record_result "{\"kind\":\"receiver-fixed-rate\",\"target\":\"memory\",\"rate\":$FIXED_RATE,\"oha\":$summary}"

    stop_last_servers "${started_servers[@]: -2}"
}

bench_receiver_emulator() {
    step "Receiver: the inbound-receiver binary with the Pub/Sub emulator (b)"
    start_emulator pubsub "$PUBSUB_READY_TIMEOUT_SECS" launch_pubsub pubsub_is_ready
    PUBSUB_PORT=$STARTED_PORT
    create_pubsub_topic "$RESULTS_TOPIC"

    local port pid idle concurrency
    local -a env_args=()
    port=$(free_port)
    mapfile -t env_args < <(receiver_env "$port")
    start_server receiver-emulator "${env_args[@]}" PUBSUB_EMULATOR_HOST="127.0.0.1:$PUBSUB_PORT" \
        "$RELEASE_DIR/inbound-receiver"
    pid=$SERVER_PID
    wait_for_port "$port" "$pid"
    sleep 1
    idle=$(memory_kb "$pid" VmRSS)

    run_oha "$port" "$OUT/warmup-emulator.json" -z "${WARMUP_SECS}s" -c 16
    for concurrency in "${CONCURRENCY_LEVELS[@]}"; do
        measure_load emulator "$port" "$concurrency"
    done
    record_memory emulator "$pid" "$idle"
    stop_last_servers "${started_servers[@]: -1}"

    step "Receiver: time from process start to the first 200 (5 starts each)"
    measure_startup memory "$RELEASE_DIR/examples/bench_receiver"
    measure_startup emulator PUBSUB_EMULATOR_HOST="127.0.0.1:$PUBSUB_PORT" \
        "$RELEASE_DIR/inbound-receiver"
    measure_startup ceiling "$RELEASE_DIR/examples/bench_ceiling"
}

# ---------------------------------------------------------------------------------------------
# Sender
# ---------------------------------------------------------------------------------------------

bench_sender() {
    step "Sender: parse and enqueue $PARSE_LINES-line files (queue stubbed)"
    local data="$OUT/sender-data"
    mkdir -p "$data"
    local format file report
    for format in csv ndjson csv.gz; do
        file="$data/emails-$PARSE_LINES.$format"
        # /usr/bin/time -f %M reports the peak RSS in KiB.
        report=$(/usr/bin/time -f 'peak_rss_kb=%M' -o "$OUT/logs/parse-$format.time" \
            "$RELEASE_DIR/examples/bench_parse" --lines "$PARSE_LINES" --file "$file" \
            2>>"$OUT/logs/parse-$format.log")
        local peak_kb
        peak_kb=$(sed -n 's/^peak_rss_kb=//p' "$OUT/logs/parse-$format.time")
        echo "  $format: $report, peak RSS $peak_kb KiB"
        record_result "{\"kind\":\"parse\",\"format\":\"$format\",\"peak_rss_kb\":$peak_kb,\"result\":$report}"
    done

    step "Sender: pacing of the local queue, $PACING_REQUESTS requests at one per $PACING_INTERVAL_MS ms"
    report=$(BENCH_REQUESTS=$PACING_REQUESTS MIN_REQUEST_INTERVAL_MS=$PACING_INTERVAL_MS \
        RUST_LOG=warn "$RELEASE_DIR/examples/bench_pacing" 2>>"$OUT/logs/pacing.log")
    echo "  pacing: $report"
    record_result "{\"kind\":\"pacing\",\"result\":$report}"
}

# ---------------------------------------------------------------------------------------------
# Sink
# ---------------------------------------------------------------------------------------------

# Runs the sink example once; EXTRA_ENV... selects the warehouse and the batching.
run_sink() {
    local label=$1
    shift
    local report
    report=$(env GOOGLE_CLOUD_PROJECT="$EMULATOR_PROJECT" ARCHIVE_BUCKET=bench-archive \
        BIGQUERY_DATASET="bench_$(unique_id)" LOG_HASH_KEY="$LOG_HASH_KEY_VALUE" RUST_LOG=info \
        BENCH_CONCURRENCY="$SINK_CONCURRENCY" BENCH_MESSAGES="$SINK_MESSAGES" \
        BENCH_MAX_SECS="$SINK_MAX_SECS" "$@" "$RELEASE_DIR/examples/bench_sink" \
        2>&1 >/dev/null | tee -a "$OUT/logs/sink-$label.log" | tail -n 1)
    echo "  $label: $report"
    record_result "{\"kind\":\"sink\",\"label\":\"$label\",\"result\":$report}"
}

unique_id() {
    "$PYTHON" -c 'import uuid; print(uuid.uuid4().hex[:12])'
}

bench_sink() {
    step "Sink: rows per second at concurrency $SINK_CONCURRENCY, in-memory warehouse"
    run_sink memory-batch500 BATCH_MAX_ROWS=500
    run_sink memory-batch1 BATCH_MAX_ROWS=1

    step "Sink: rows per second at concurrency $SINK_CONCURRENCY, BigQuery emulator"
    start_emulator bigquery "$BIGQUERY_READY_TIMEOUT_SECS" launch_bigquery bigquery_is_ready
    local bigquery_host="127.0.0.1:$STARTED_PORT"
    run_sink emulator-batch500 BATCH_MAX_ROWS=500 BIGQUERY_EMULATOR_HOST="$bigquery_host"
    run_sink emulator-batch1 BATCH_MAX_ROWS=1 BIGQUERY_EMULATOR_HOST="$bigquery_host"
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

step "Prerequisites"
require_command cargo "Install Rust with rustup (https://rustup.rs)."
require_command "$PYTHON" "Install Python 3 or set PYTHON."
require_command curl "Install the Debian package curl."
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing; install the Debian package time."
install_oha
install_emulators
describe_machine
build_release

for part in "${parts[@]}"; do
    case $part in
    receiver)
        bench_receiver_memory_and_ceiling
        bench_receiver_emulator
        ;;
    sender) bench_sender ;;
    sink) bench_sink ;;
    esac
done

step "Summary"
"$PYTHON" "$HELPERS" summary "$RESULTS" "$OUT/machine.txt" | tee "$OUT/summary.md"
echo "Reports: $OUT"
