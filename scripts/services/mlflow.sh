#!/usr/bin/env bash
# A private MLflow tracking and model registry server for tests: scripts/services/mlflow.sh start|stop|env
# Runs the project venv's `mlflow server` on 127.0.0.1:${AIOPS_TEST_MLFLOW_PORT:-55000} with its SQLite store and
# its artifacts under .services/mlflow; `stop` removes them, so every run starts from an empty registry.
# When that port is taken by another program, a free one is used instead; `env` prints the one in use.
set -euo pipefail
cd "$(dirname "$0")/../.."
PREFERRED_PORT=${AIOPS_TEST_MLFLOW_PORT:-55000}
DIR=$PWD/.services/mlflow
PIDFILE=$DIR/server.pid
PORTFILE=$DIR/port
MLFLOW=$PWD/.venv/bin/mlflow
ATTEMPTS=3

port() { if [ -f "$PORTFILE" ]; then cat "$PORTFILE"; else echo "$PREFERRED_PORT"; fi; }
url() { echo "http://127.0.0.1:$(port)"; }
running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answering() { curl -fsS --max-time 2 "$(url)/health" >/dev/null 2>&1; }

# The preferred port when nothing holds it, else one the kernel hands out. Both lie in the kernel's range for
# outgoing connections, so any program's client socket may hold the preferred one for a while.
free_port() {
  python3 - "$PREFERRED_PORT" <<'PY'
import socket, sys
for port in (int(sys.argv[1]), 0):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        print(s.getsockname()[1])
        break
PY
}

show_log() {
  echo "mlflow: the last lines of $DIR/server.log:" >&2
  tail -n 40 "$DIR/server.log" >&2 2>/dev/null || true
}

start() {
  if running && answering; then return 0; fi
  if [ ! -x "$MLFLOW" ]; then echo "mlflow: $MLFLOW is missing; install the dev extras first" >&2; exit 1; fi
  # A server that dies at start (a port taken between the check and the bind, a slow first migration) is
  # started afresh: the log of each failed attempt is shown, so the cause is never hidden.
  for attempt in $(seq 1 "$ATTEMPTS"); do
    if start_once; then return 0; fi
    show_log
    echo "mlflow: attempt $attempt of $ATTEMPTS failed" >&2
  done
  stop
  exit 1
}

# Stops whatever an earlier start (or a failed attempt) left, then starts one server.
start_once() {
  stop
  local t0; t0=$(date +%s%N)
  mkdir -p "$DIR/artifacts"
  free_port > "$PORTFILE"
  local port; port=$(port)
  # Its own session (process group), because `mlflow server` runs the web server as a child process: stop must
  # end both, not leave an orphan holding the port. The background job runner (a dozen worker processes for
  # evaluation jobs) serves nothing the registry needs, so it stays off.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$MLFLOW" server --backend-store-uri "sqlite:///$DIR/mlflow.db" --artifacts-destination "$DIR/artifacts" \
    --host 127.0.0.1 --port "$port" --workers 1 >"$DIR/server.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 240); do
    if ! running; then echo "mlflow: server on port $port exited" >&2; return 1; fi
    if answering; then
      echo "mlflow: server on $(url) ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
      return 0
    fi
    sleep 0.25
  done
  echo "mlflow: server on port $port did not answer within 60 s" >&2
  return 1
}

stop() {
  if running; then
    local pid; pid=$(cat "$PIDFILE")
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -rf "$DIR"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  env) echo "export AIOPS_TEST_MLFLOW_URL=$(url)" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
