#!/usr/bin/env bash
# Start a single-node KRaft Kafka broker on 127.0.0.1 in the background and wait until it
# serves metadata. Idempotent: succeeds at once if this data dir's broker already runs.
# Env: KAFKA_PORT (9092) KAFKA_CONTROLLER_PORT (9093) KAFKA_DATA_DIR (run/data) KAFKA_HEAP (1G)
#      KAFKA_READY_TIMEOUT (90, seconds)
# Last stdout line: the bootstrap address 127.0.0.1:$KAFKA_PORT.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"
timeout_s="${KAFKA_READY_TIMEOUT:-90}"
bootstrap="127.0.0.1:$KAFKA_PORT"

fail() {
  echo "up.sh: $*" >&2
  for f in "$LOG_DIR/server.log" "$LOG_DIR/stdout.log"; do
    [[ -s "$f" ]] && { echo "--- tail of $f" >&2; tail -n 40 "$f" >&2; }
  done
  exit 1
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid="$(read_pid || true)"
if [[ -n "$pid" ]] && is_our_broker "$pid"; then
  echo "up.sh: broker already running (pid $pid)" >&2
else
  rm -f "$PID_FILE"
  # Otherwise the new broker dies on bind while the readiness probe happily talks to
  # whatever already owns the port.
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    port_in_use "$p" && fail "port $p on 127.0.0.1 is already in use"
  done

  "$KAFKA_DIR/fetch.sh" >&2
  mkdir -p "$KAFKA_DATA_DIR/storage" "$LOG_DIR"
  sed -e "s|@PORT@|$KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@DATA_DIR@|$(printf '%s' "$KAFKA_DATA_DIR" | sed 's/[|&\\]/\\&/g')|g" \
      "$KAFKA_DIR/server.properties.template" >"$PROPS"

  # One cluster id per data dir, kept so a restart reuses the formatted storage.
  if [[ ! -s "$KAFKA_DATA_DIR/cluster.id" ]]; then
    python3 -c 'import base64, uuid
while (u := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode())[0] == "-": pass
print(u)' >"$KAFKA_DATA_DIR/cluster.id"
  fi
  cp="$KAFKA_DIR/libs/*"
  # -g: a no-op when the storage is already formatted, so this is safe on every start.
  java -Xmx256M -cp "$cp" kafka.tools.StorageTool format --standalone -g \
    -t "$(cat "$KAFKA_DATA_DIR/cluster.id")" -c "$PROPS" >"$LOG_DIR/format.log" 2>&1 \
    || { cat "$LOG_DIR/format.log" >&2; fail "storage format failed"; }

  # setsid: detach from the caller's session so Ctrl-C / a killed test runner's process
  # group does not take the broker down; no inherited stdio, so callers capturing our
  # output are not held open by the broker.
  setsid java "-Xmx$KAFKA_HEAP" -Djava.awt.headless=true \
    "-Dlog4j2.configurationFile=$KAFKA_DIR/log4j2.properties" "-Dkafka.logs.dir=$LOG_DIR" \
    -cp "$cp" kafka.Kafka "$PROPS" </dev/null >"$LOG_DIR/stdout.log" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"
  echo "up.sh: started broker pid $pid, data dir $KAFKA_DATA_DIR" >&2
fi

deadline=$((SECONDS + timeout_s))
until python3 "$KAFKA_DIR/ready.py" "$bootstrap" --timeout 2 >&2 2>/dev/null; do
  is_our_broker "$pid" || fail "broker (pid $pid) exited during startup"
  ((SECONDS < deadline)) || fail "broker not ready after ${timeout_s}s (pid $pid still running; see $LOG_DIR)"
done
echo "$bootstrap"
