# Shell helpers shared by tests/run.sh, tests/emulators.sh and the optional check scripts.
# Source this file from bash. It defines functions and the cache paths, and starts nothing.
#
# The cache lives outside the clone so that a second run reuses the Python virtual
# environments and the Cargo target directory:
#   ENRICHMENT_CACHE_DIR  cache root (default: $HOME/.cache/enrichment-webhooks)
#   PYTHON                interpreter used to create the virtual environments (default: python3)

CACHE=${ENRICHMENT_CACHE_DIR:-$HOME/.cache/enrichment-webhooks}
PYTHON=${PYTHON:-python3}

# Prints a message to stderr and exits with status 1.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# Prints a one-line step header.
step() {
    printf '\n==> %s\n' "$*"
}

# Fails with an install hint when a command that the scripts call is not on PATH.
require_command() {
    local name=$1 hint=$2
    command -v "$name" >/dev/null 2>&1 || die "$name is not installed or not on PATH. $hint"
}

# Prints a TCP port on 127.0.0.1 that is free at the time of the call.
#
# The kernel picks the port for a socket bound to port 0, and the socket is closed before the
# caller binds it again, so another process can take the port in between. Callers start the
# server right away and retry with a new port when the server exits during start-up.
free_port() {
    "$PYTHON" -c '
import socket
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    print(s.getsockname()[1])
'
}

# Creates or reuses the virtual environment $CACHE/venv-NAME with exactly PACKAGES installed.
#
# Usage: ensure_venv NAME PACKAGE...
#
# The file .packages.sha256 inside the environment contains a hash of the interpreter version and
# the package list. The environment is rebuilt from scratch when that hash differs or the file
# is missing, for example after an interrupted install, and reused otherwise. A lock file
# keeps two concurrent runs from building the same environment at once. The environment's
# path is left in the variable VENV_DIR.
# Prints the package pins of a requirements FILE, one per line, without comments and blank
# lines, for ensure_venv. The files hold every package of an environment (pip freeze), so that a
# new release of a dependency cannot change what a fresh machine installs.
read_requirements() {
    [[ -f $1 ]] || die "requirements file $1 not found"
    grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$1"
}

ensure_venv() {
    local name=$1
    shift
    [[ $# -gt 0 ]] || die "ensure_venv $name: no packages given"

    local venv="$CACHE/venv-$name"
    local stamp="$venv/.packages.sha256"
    local python_version wanted
    python_version=$("$PYTHON" -c 'import sys; print(sys.version)') ||
        die "$PYTHON cannot run. Install Python 3 or set PYTHON to an interpreter."
    wanted=$(printf '%s\n' "$python_version" "$@" | sha256sum | cut -d' ' -f1)

    mkdir -p "$CACHE"
    local lock_fd
    exec {lock_fd}>"$CACHE/venv-$name.lock"
    flock "$lock_fd"

    if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$wanted" ]]; then
        echo "Creating Python environment $venv: $*"
        local started=$SECONDS
        rm -rf "$venv"
        "$PYTHON" -m venv "$venv" || die "creating the virtual environment $venv failed"
        "$venv/bin/pip" install --quiet --progress-bar off "$@" ||
            die "installing $* into $venv failed"
        printf '%s\n' "$wanted" >"$stamp"
        echo "Created $venv in $((SECONDS - started)) s"
    fi
    exec {lock_fd}>&-

    # Read by the caller.
    # shellcheck disable=SC2034
    VENV_DIR=$venv
}
