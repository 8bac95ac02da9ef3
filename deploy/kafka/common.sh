# Shared by up.sh and down.sh (sourced, not executed).
# shellcheck shell=bash disable=SC2034  # variables are used by the sourcing scripts

KAFKA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:-1G}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_DIR/run/data}"
# Absolute, so the generated config and the pid file do not depend on the caller's cwd.
[[ "$KAFKA_DATA_DIR" == /* ]] || KAFKA_DATA_DIR="$PWD/$KAFKA_DATA_DIR"
PID_FILE="$KAFKA_DATA_DIR/kafka.pid"
LOG_DIR="$KAFKA_DATA_DIR/logs"
PROPS="$KAFKA_DATA_DIR/server.properties"

# True if $1 is a running (not zombie) broker started for this data dir. The cmdline
# check guards against a recycled pid; the state check matters where pid 1 does not reap.
is_our_broker() {
  local pid="$1" state
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  state="$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 1
  tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$PROPS"
}

read_pid() { [[ -f "$PID_FILE" ]] && tr -dc '0-9' <"$PID_FILE"; }
