#!/usr/bin/env bash
# Starts the Pub/Sub, Cloud Storage and BigQuery emulators in the background for local
# development, the same way tests/run.sh does, and prints the variables that the tests read.
#
#   eval "$(tests/emulators.sh start)"   start them and export their addresses
#   tests/emulators.sh env               print the export lines again
#   tests/emulators.sh status            list the recorded processes
#   tests/emulators.sh stop              stop them
#
# State lives in $ENRICHMENT_CACHE_DIR/run (default ~/.cache/enrichment-webhooks/run): the
# process list (pids), the export lines (env), the logs (logs/) and the working files (data/).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tests/lib/common.sh
source "$REPO_ROOT/tests/lib/common.sh"
# shellcheck source=tests/lib/emulators.sh
source "$REPO_ROOT/tests/lib/emulators.sh"

RUN_DIR="$CACHE/run"

usage() {
    sed -n '2,11s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

# Succeeds when a process recorded in $RUN_DIR/pids is still running.
emulators_running() {
    [[ -f "$RUN_DIR/pids" ]] || return 1
    local name pid start leader
    while read -r name pid start leader; do
        [[ -n "$pid" && "$(process_start_time "$pid")" == "$start" ]] && return 0
    done <"$RUN_DIR/pids"
    return 1
}

command_start() {
    if emulators_running; then
        echo "The emulators are already running. Stop them with: $0 stop" >&2
        cat "$RUN_DIR/env"
        return 0
    fi

    rm -rf "$RUN_DIR/logs" "$RUN_DIR/data" "$RUN_DIR/env" "$RUN_DIR/pids"
    mkdir -p "$RUN_DIR"
    # Standard output carries only the export lines, so that eval "$(... start)" works.
    install_emulators >&2

    # On a failed start, stop what did start and show why the rest did not.
    trap 'status=$?; if ((status != 0)); then print_emulator_logs >&2; stop_emulators; fi' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start_emulators >&2
    trap - EXIT INT TERM

    echo "Emulators started. Logs: $RUN_DIR/logs. Stop them with: $0 stop" >&2
    cat "$RUN_DIR/env"
}

command_stop() {
    if [[ ! -f "$RUN_DIR/pids" ]]; then
        echo "No emulators were started from $RUN_DIR." >&2
        return 0
    fi
    stop_emulators
    rm -rf "$RUN_DIR/data" "$RUN_DIR/env"
    echo "Emulators stopped. Their logs stay in $RUN_DIR/logs until the next start." >&2
}

command_env() {
    emulators_running || die "the emulators are not running. Start them with: $0 start"
    cat "$RUN_DIR/env"
}

command_status() {
    if [[ ! -f "$RUN_DIR/pids" ]]; then
        echo "not running"
        return 0
    fi
    local name pid start leader
    while read -r name pid start leader; do
        if [[ "$(process_start_time "$pid")" == "$start" ]]; then
            echo "$name: running (PID $pid)"
        else
            echo "$name: not running (PID $pid has ended)"
        fi
    done <"$RUN_DIR/pids"
}

main() {
    [[ $# -eq 1 ]] || {
        usage >&2
        exit 2
    }

    # One command at a time per cache directory, so two starts cannot both launch emulators.
    mkdir -p "$CACHE"
    exec {lock_fd}>"$CACHE/run.lock"
    flock "$lock_fd"

    case $1 in
    start) command_start ;;
    stop) command_stop ;;
    env) command_env ;;
    status) command_status ;;
    -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
