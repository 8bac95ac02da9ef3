#!/usr/bin/env bash
# Stop the broker of $KAFKA_DATA_DIR (SIGTERM = clean controlled shutdown; SIGKILL after
# KAFKA_STOP_TIMEOUT seconds, default 30). Succeeds if nothing runs.
# Usage: down.sh [--purge]   --purge also deletes the data dir (storage, logs, config).
# Env: same as up.sh (KAFKA_DATA_DIR decides which broker).
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
purge=0
case "${1:-}" in
  "") ;;
  --purge) purge=1 ;;
  *) echo "usage: $0 [--purge]" >&2; exit 2 ;;
esac
stop_timeout="${KAFKA_STOP_TIMEOUT:-30}"

pid="$(read_pid || true)"
if [[ -n "$pid" ]] && is_our_broker "$pid"; then
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + stop_timeout))
  while is_our_broker "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
  if is_our_broker "$pid"; then
    echo "down.sh: pid $pid still running after ${stop_timeout}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    while is_our_broker "$pid"; do sleep 0.1; done
  fi
  echo "down.sh: stopped broker pid $pid" >&2
else
  echo "down.sh: no broker running for $KAFKA_DATA_DIR" >&2
fi
rm -f "$PID_FILE"

if ((purge)) && [[ -d "$KAFKA_DATA_DIR" ]]; then
  # Refuse to rm -rf a directory that does not look like one of ours (e.g. a typo'd env var).
  if [[ -e "$KAFKA_DATA_DIR/server.properties" || -e "$KAFKA_DATA_DIR/storage" || -z "$(ls -A "$KAFKA_DATA_DIR")" ]]; then
    rm -rf "$KAFKA_DATA_DIR"
    echo "down.sh: purged $KAFKA_DATA_DIR" >&2
  else
    echo "down.sh: $KAFKA_DATA_DIR does not look like a Kafka data dir; not purging" >&2
    exit 1
  fi
fi
