#!/usr/bin/env bash
# Benchmarks the inbound receiver, the outbound sender and the results sink on this machine.
# One run installs the load tool, builds release binaries and starts the emulators it needs on
# 127.0.0.1. It stops everything it started, by PID, when it ends.
#
# Usage: tests/bench/run.sh [--only receiver|sender|sink] [--out DIR] [--load-secs N]
#
#   --only PART     run one part; repeat the option to run several (default: all three)
#   --out DIR       folder for the reports (default: $ENRICHMENT_CACHE_DIR/bench/<UTC time>)
#   --load-secs N   seconds of load per receiver measurement (default: 10)
#
# What it measures (BENCHMARKS.md explains each figure and what limits it):
#   receiver  requests per second, p50/p99 latency and server CPU per request at concurrency
#             1, 16 and 64 with oha, against (a) the receiver with an in-memory publisher (also
#             with RUST_LOG=warn, and with AUTH_MODE=none too), (b) the receiver binary with the
#             Pub/Sub emulator and (c) a bare axum server, the ceiling; p99 at a fixed 1000
#             requests per second on (a); idle and loaded RSS; time from process start to the
#             first 200. Every request is signed with Standard Webhooks and carries the payload
#             in tests/bench/payload.json.
#   sender    emails per second and peak RSS to parse and enqueue 1 M-line CSV, NDJSON and
#             gzipped files with the queue stubbed; pacing of the local queue over 200 requests
#             at 20 per second (and at one per 51 ms) against a partner server on 127.0.0.1.
#   sink      rows per second at concurrency 64 with micro-batching (BATCH_MAX_ROWS=500, and
#             the variants 64 rows or no wait) and with one insert per message
#             (BATCH_MAX_ROWS=1), into an in-memory warehouse and into the BigQuery emulator.
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
CLOCK_TICKS=$(getconf CLK_TCK)
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
    sed -n '2,34s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
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

# Process group of the emulator that the current measurement uses, for its CPU time; empty
# when none is used.
EMULATOR_GROUP=""

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
        sender) targets+=(-p outbound-sender --example parse_throughput --example bench_pacing) ;;
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

# Prints the CPU time (user and system) that process PID has used, in clock ticks.
cpu_ticks() {
    local stat
    stat=$(cat "/proc/$1/stat")
    # Field 2 (the command name) may contain spaces, so split after its closing bracket.
    # There, fields 14 (utime) and 15 (stime) have the indexes 11 and 12.
    local -a fields
    read -ra fields <<<"${stat##*) }"
    echo $((fields[11] + fields[12]))
}

# Prints the CPU time that the processes of the process group LEADER have used, in clock
# ticks. The emulators run as process groups (a launcher script and Java or Python).
group_cpu_ticks() {
    local leader=$1 total=0 pid pgid ticks
    while read -r pid pgid; do
        [[ "$pgid" == "$leader" ]] || continue
        ticks=$(cpu_ticks "$pid" 2>/dev/null) || continue
        total=$((total + ticks))
    done < <(ps -e -o pid=,pgid=)
    echo "$total"
}

# Prints the field FIELD (VmRSS or VmHWM) of process PID in KiB.
memory_kb() {
    awk -v field="$2:" '$1 == field {print $2}' "/proc/$1/status"
}

# ---------------------------------------------------------------------------------------------
# Receiver
# ---------------------------------------------------------------------------------------------

# Prints the receiver's environment without the listen address and the Pub/Sub emulator, one
# VAR=value a line.
receiver_env() {
    printf '%s\n' GOOGLE_CLOUD_PROJECT="$EMULATOR_PROJECT" \
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

# Measures the server PID on PORT at one concurrency and records the result under TARGET,
# with the CPU time the server used per request.
measure_load() {
    local target=$1 pid=$2 port=$3 concurrency=$4
    local file="$OUT/receiver-$target-c$concurrency.json" summary ticks_before ticks_after
    local emulator_before=0 emulator_after=0
    ticks_before=$(cpu_ticks "$pid")
    [[ -z "$EMULATOR_GROUP" ]] || emulator_before=$(group_cpu_ticks "$EMULATOR_GROUP")
    run_oha "$port" "$file" -z "${LOAD_SECS}s" -c "$concurrency"
    ticks_after=$(cpu_ticks "$pid")
    [[ -z "$EMULATOR_GROUP" ]] || emulator_after=$(group_cpu_ticks "$EMULATOR_GROUP")
    summary=$("$PYTHON" "$HELPERS" oha-summary "$file")
    echo "  $target, concurrency $concurrency: $summary"
    record_result "{\"kind\":\"receiver-load\",\"target\":\"$target\",\"concurrency\":$concurrency,\"server_cpu_ticks\":$((ticks_after - ticks_before)),\"emulator_cpu_ticks\":$((emulator_after - emulator_before)),\"clock_ticks_per_sec\":$CLOCK_TICKS,\"load_avg\":\"$(cut -d' ' -f1 /proc/loadavg)\",\"oha\":$summary}"
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
    mapfile -t env_args < <(receiver_env)
    summary=$("$PYTHON" "$HELPERS" first-200 --port "$port" --body "$PAYLOAD" \
        --secret "$WEBHOOK_SECRET" --runs 5 -- env "${env_args[@]}" PORT="$port" \
        BIND_ADDRESS=127.0.0.1 "$@" 2>>"$OUT/logs/startup-$target.log")
    echo "  $target, start to first 200: $summary"
    record_result "{\"kind\":\"startup\",\"target\":\"$target\",\"result\":$summary}"
}

# Starts a receiver variant NAME as ENV... BINARY on a free port, waits until it listens and
# records its idle RSS. Leaves the port in VARIANT_PORT[NAME], the PID in VARIANT_PID[NAME]
# and the idle RSS in KiB in VARIANT_IDLE_KB[NAME].
declare -A VARIANT_PORT VARIANT_PID VARIANT_IDLE_KB
start_variant() {
    local name=$1
    shift
    local port
    port=$(free_port)
    start_server "$name" PORT="$port" BIND_ADDRESS=127.0.0.1 "$@"
    VARIANT_PORT[$name]=$port
    VARIANT_PID[$name]=$SERVER_PID
    wait_for_port "$port" "$SERVER_PID"
}

# Records the idle RSS of every started variant, after a second without requests.
record_idle_memory() {
    sleep 1
    local name
    for name in "$@"; do
        VARIANT_IDLE_KB[$name]=$(memory_kb "${VARIANT_PID[$name]}" VmRSS)
    done
}

bench_receiver_memory_and_ceiling() {
    step "Receiver: in-memory publisher (a) against the bare axum ceiling (c)"
    local -a env_args=()
    mapfile -t env_args < <(receiver_env)
    # (a) as deployed: signatures checked, one JSON log line per request and one per publish.
    start_variant memory "${env_args[@]}" "$RELEASE_DIR/examples/bench_receiver"
    # Two changes tried against the profile of (a): no per-request logs, and no signature check.
    start_variant memory-quiet "${env_args[@]}" RUST_LOG=warn \
        "$RELEASE_DIR/examples/bench_receiver"
    start_variant memory-quiet-noauth "${env_args[@]}" RUST_LOG=warn AUTH_MODE=none \
        "$RELEASE_DIR/examples/bench_receiver"
    start_variant ceiling "$RELEASE_DIR/examples/bench_ceiling"
    local -a variants=(ceiling memory memory-quiet memory-quiet-noauth)
    record_idle_memory "${variants[@]}"

    # Warm-up: connections, allocator pools and the CPU caches.
    local name
    for name in "${variants[@]}"; do
        run_oha "${VARIANT_PORT[$name]}" "$OUT/warmup-$name.json" -z "${WARMUP_SECS}s" -c 16
    done

    # The variants take turns at each concurrency, so that load from other processes on the
    # machine affects them alike.
    local concurrency
    for concurrency in "${CONCURRENCY_LEVELS[@]}"; do
        for name in "${variants[@]}"; do
            measure_load "$name" "${VARIANT_PID[$name]}" "${VARIANT_PORT[$name]}" "$concurrency"
        done
    done
    for name in memory ceiling; do
        record_memory "$name" "${VARIANT_PID[$name]}" "${VARIANT_IDLE_KB[$name]}"
    done

    step "Receiver: p99 at a fixed $FIXED_RATE requests per second, in-memory publisher"
    local file="$OUT/receiver-memory-rate$FIXED_RATE.json" summary
    # --latency-correction measures from each request's scheduled start, so a stall also
    # counts against the requests that queued behind it.
    run_oha "${VARIANT_PORT[memory]}" "$file" -z "${FIXED_RATE_SECS}s" -c 16 -q "$FIXED_RATE" \
        --latency-correction
    summary=$("$PYTHON" "$HELPERS" oha-summary "$file")
    echo "  fixed rate: $summary"
    record_result "{\"kind\":\"receiver-fixed-rate\",\"target\":\"memory\",\"rate\":$FIXED_RATE,\"oha\":$summary}"

    stop_last_servers "${started_servers[@]: -4}"
}

bench_receiver_emulator() {
    step "Receiver: the inbound-receiver binary with the Pub/Sub emulator (b)"
    start_emulator pubsub "$PUBSUB_READY_TIMEOUT_SECS" launch_pubsub pubsub_is_ready
    PUBSUB_PORT=$STARTED_PORT
    EMULATOR_GROUP=$LAUNCHED_PID
    create_pubsub_topic "$RESULTS_TOPIC"

    local -a env_args=()
    mapfile -t env_args < <(receiver_env)
    start_variant emulator "${env_args[@]}" PUBSUB_EMULATOR_HOST="127.0.0.1:$PUBSUB_PORT" \
        "$RELEASE_DIR/inbound-receiver"
    record_idle_memory emulator

    run_oha "${VARIANT_PORT[emulator]}" "$OUT/warmup-emulator.json" -z "${WARMUP_SECS}s" -c 16
    local concurrency
    for concurrency in "${CONCURRENCY_LEVELS[@]}"; do
        measure_load emulator "${VARIANT_PID[emulator]}" "${VARIANT_PORT[emulator]}" \
            "$concurrency"
    done
    record_memory emulator "${VARIANT_PID[emulator]}" "${VARIANT_IDLE_KB[emulator]}"
    stop_last_servers "${started_servers[@]: -1}"
    EMULATOR_GROUP=""

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
    step "Sender: parse and enqueue $PARSE_LINES-line files (queue and BigQuery stubbed)"
    # parse_throughput (written with the sender) prints one Markdown row per format:
    # | format | lines | jobs | seconds | emails/s | peak RSS (MiB) |, where the peak RSS is
    # VmHWM of a process that read only that format.
    local format row
    local -a cells
    for format in csv ndjson text-gz; do
        row=$("$RELEASE_DIR/examples/parse_throughput" "$PARSE_LINES" "$format" \
            2>>"$OUT/logs/parse-$format.log")
        echo "  $row"
        IFS='|' read -ra cells <<<"$row"
        # cells[0] is the empty text before the first bar.
        record_result "{\"kind\":\"parse\",\"format\":\"${cells[1]// /}\",\"lines\":${cells[2]// /},\"jobs\":${cells[3]// /},\"seconds\":${cells[4]// /},\"emails_per_sec\":${cells[5]// /},\"peak_rss_mib\":${cells[6]// /}}"
    done

    step "Sender: pacing of the local queue, $PACING_REQUESTS requests at one per $PACING_INTERVAL_MS ms"
    measure_pacing "$PACING_INTERVAL_MS"
    # Change tried: one more millisecond, the resolution of Tokio's timer, as a margin.
    measure_pacing $((PACING_INTERVAL_MS + 1))
}

# Runs the local queue with MIN_REQUEST_INTERVAL_MS=INTERVAL_MS and records the gaps, to be
# judged against PACING_INTERVAL_MS.
measure_pacing() {
    local interval_ms=$1 report
    report=$(BENCH_REQUESTS=$PACING_REQUESTS MIN_REQUEST_INTERVAL_MS=$interval_ms \
        "$RELEASE_DIR/examples/bench_pacing" 2>>"$OUT/logs/pacing.log")
    echo "  MIN_REQUEST_INTERVAL_MS=$interval_ms: $report"
    record_result "{\"kind\":\"pacing\",\"target_interval_ms\":$PACING_INTERVAL_MS,\"result\":$report}"
}

# ---------------------------------------------------------------------------------------------
# Sink
# ---------------------------------------------------------------------------------------------

# Runs the sink example once; EXTRA_ENV... selects the warehouse and the batching.
run_sink() {
    local label=$1
    shift
    local report emulator_before=0 emulator_after=0
    [[ -z "$EMULATOR_GROUP" ]] || emulator_before=$(group_cpu_ticks "$EMULATOR_GROUP")
    report=$(env GOOGLE_CLOUD_PROJECT="$EMULATOR_PROJECT" ARCHIVE_BUCKET=bench-archive \
        BIGQUERY_DATASET="bench_$(unique_id)" LOG_HASH_KEY="$LOG_HASH_KEY_VALUE" RUST_LOG=info \
        BENCH_CONCURRENCY="$SINK_CONCURRENCY" BENCH_MESSAGES="$SINK_MESSAGES" \
        BENCH_MAX_SECS="$SINK_MAX_SECS" "$@" "$RELEASE_DIR/examples/bench_sink" \
        2>&1 >/dev/null | tee -a "$OUT/logs/sink-$label.log" | tail -n 1)
    [[ -z "$EMULATOR_GROUP" ]] || emulator_after=$(group_cpu_ticks "$EMULATOR_GROUP")
    echo "  $label: $report"
    record_result "{\"kind\":\"sink\",\"label\":\"$label\",\"emulator_cpu_ticks\":$((emulator_after - emulator_before)),\"clock_ticks_per_sec\":$CLOCK_TICKS,\"result\":$report}"
}

unique_id() {
    "$PYTHON" -c 'import uuid; print(uuid.uuid4().hex[:12])'
}

# Runs the sink with the default batching (500 rows, 50 ms), with one insert per message, and
# with two changes tried: batches of at most the concurrency, and no wait for more rows.
# EXTRA_ENV... selects the warehouse.
run_sink_variants() {
    local warehouse=$1
    shift
    run_sink "$warehouse-batch500" BATCH_MAX_ROWS=500 BATCH_MAX_WAIT_MS=50 "$@"
    run_sink "$warehouse-batch1" BATCH_MAX_ROWS=1 BATCH_MAX_WAIT_MS=50 "$@"
    run_sink "$warehouse-batch$SINK_CONCURRENCY" BATCH_MAX_ROWS="$SINK_CONCURRENCY" \
        BATCH_MAX_WAIT_MS=50 "$@"
    run_sink "$warehouse-batch500-wait0" BATCH_MAX_ROWS=500 BATCH_MAX_WAIT_MS=0 "$@"
}

bench_sink() {
    step "Sink: rows per second at concurrency $SINK_CONCURRENCY, in-memory warehouse"
    run_sink_variants memory

    step "Sink: rows per second at concurrency $SINK_CONCURRENCY, BigQuery emulator"
    start_emulator bigquery "$BIGQUERY_READY_TIMEOUT_SECS" launch_bigquery bigquery_is_ready
    EMULATOR_GROUP=$LAUNCHED_PID
    run_sink_variants emulator BIGQUERY_EMULATOR_HOST="127.0.0.1:$STARTED_PORT"
    EMULATOR_GROUP=""
}

# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------

step "Prerequisites"
require_command cargo "Install Rust with rustup (https://rustup.rs)."
require_command "$PYTHON" "Install Python 3 or set PYTHON."
require_command curl "Install the Debian package curl."
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
