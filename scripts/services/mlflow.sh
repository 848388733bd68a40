#!/usr/bin/env bash
# A private MLflow tracking and model registry server for tests: scripts/services/mlflow.sh start|stop|env
# Runs the project venv's `mlflow server` on 127.0.0.1:${AIOPS_TEST_MLFLOW_PORT:-55000} with its SQLite store and
# its artifacts under .services/mlflow; `stop` removes them, so every run starts from an empty registry.
set -euo pipefail
cd "$(dirname "$0")/../.."
PORT=${AIOPS_TEST_MLFLOW_PORT:-55000}
DIR=$PWD/.services/mlflow
PIDFILE=$DIR/server.pid
MLFLOW=$PWD/.venv/bin/mlflow
URL=http://127.0.0.1:$PORT

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
answering() { curl -fsS --max-time 2 "$URL/health" >/dev/null 2>&1; }

start() {
  if running && answering; then return 0; fi
  stop
  if answering; then echo "mlflow: something else already answers on $URL" >&2; exit 1; fi
  if [ ! -x "$MLFLOW" ]; then echo "mlflow: $MLFLOW is missing; install the dev extras first" >&2; exit 1; fi
  local t0; t0=$(date +%s%N)
  mkdir -p "$DIR/artifacts"
  # Its own session (process group), because `mlflow server` runs the web server as a child process: stop must
  # end both, not leave an orphan holding the port. The background job runner (a dozen worker processes for
  # evaluation jobs) serves nothing the registry needs, so it stays off.
  MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid "$MLFLOW" server --backend-store-uri "sqlite:///$DIR/mlflow.db" --artifacts-destination "$DIR/artifacts" \
    --host 127.0.0.1 --port "$PORT" --workers 1 >"$DIR/server.log" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 240); do
    if ! running; then echo "mlflow: server exited; see $DIR/server.log" >&2; exit 1; fi
    if answering; then
      echo "mlflow: server on $URL ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
      return 0
    fi
    sleep 0.25
  done
  echo "mlflow: server did not answer within 60 s; see $DIR/server.log" >&2
  stop
  exit 1
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
  env) echo "export AIOPS_TEST_MLFLOW_URL=$URL" ;;
  *) echo "usage: $0 start|stop|env" >&2; exit 2 ;;
esac
