#!/usr/bin/env bash
# Private Prometheus and Alertmanager servers for tests: scripts/services/prometheus.sh start|stop|reload|env
# Run from the Debian packages on loopback ports, with configs generated under .services/prometheus. Prometheus
# scrapes the tests' exporter and the engine the tests serve, evaluates the shipped rules plus a test rule,
# remote-writes the test metrics to that engine, and Alertmanager posts every alert to its webhook with a bearer
# token. `reload` makes a running Prometheus take a changed configuration.
set -euo pipefail
cd "$(dirname "$0")/../.."
PROM_PORT=${AIOPS_TEST_PROM_PORT:-59090}
AM_PORT=${AIOPS_TEST_AM_PORT:-59093}
# The two ports tests bind again and again (each test module starts its own exporter or engine there) lie below
# Linux's ephemeral range (32768-60999): a port in it can be held for a minute in TIME-WAIT by any outgoing
# connection that happened to use it, and the next bind fails with "Address already in use".
EXPORTER_PORT=${AIOPS_TEST_EXPORTER_PORT:-29101}
ENGINE_PORT=${AIOPS_TEST_ENGINE_PORT:-29102}
TOKEN=aiops-test-ingest-token
DIR=$PWD/.services/prometheus

install() {
  command -v prometheus >/dev/null && command -v prometheus-alertmanager >/dev/null && return 0
  if [ "$(id -u)" != 0 ]; then echo "apt-get install prometheus prometheus-alertmanager first" >&2; exit 1; fi
  # Keep the packages from starting their own daemons on the default ports (and leave a guard we found alone).
  local guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager >/dev/null
  [ -n "$guard" ] && rm -f "$guard"
  return 0
}

write_configs() {
  mkdir -p "$DIR/prometheus-data" "$DIR/alertmanager-data"
  cat > "$DIR/test-rules.yml" <<RULES
groups:
  - name: aiops-integration-test
    rules:
      - alert: AiopsTestValueHigh
        expr: aiops_test_value > 100
        for: 0s
        labels: {severity: critical}
        annotations: {summary: "aiops_test_value is {{ \$value }}"}
RULES
  cat > "$DIR/prometheus.yml" <<CONFIG
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ["$DIR/test-rules.yml", "$PWD/helm/prometheus-rules/*.yml"]
alerting:
  alertmanagers: [{static_configs: [{targets: ["127.0.0.1:$AM_PORT"]}]}]
scrape_configs:
  - job_name: aiops-test-exporter
    static_configs: [{targets: ["127.0.0.1:$EXPORTER_PORT"]}]
  - job_name: aiops-test-engine
    static_configs: [{targets: ["127.0.0.1:$ENGINE_PORT"]}]
remote_write:
  - url: http://127.0.0.1:$ENGINE_PORT/api/v1/write
    authorization: {type: Bearer, credentials: $TOKEN}
    write_relabel_configs: [{source_labels: [__name__], regex: "aiops_test_.*", action: keep}]
    queue_config: {batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s}
CONFIG
  cat > "$DIR/alertmanager.yml" <<CONFIG
route:
  receiver: aiops
  group_by: [alertname]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: aiops
    webhook_configs:
      - url: http://127.0.0.1:$ENGINE_PORT/api/v1/alerts
        send_resolved: true
        http_config: {authorization: {type: Bearer, credentials: $TOKEN}}
CONFIG
}

wait_ready() {
  for _ in $(seq 1 100); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$2 did not become ready; the last lines of $DIR/$2.log:" >&2
  tail -n 20 "$DIR/$2.log" >&2 2>/dev/null || true
  exit 1
}

start() {
  install
  stop
  # Every run starts from empty storage: no alert or sample of an earlier run is replayed into this one.
  rm -rf "$DIR/prometheus-data" "$DIR/alertmanager-data"
  write_configs
  promtool check config "$DIR/prometheus.yml" >/dev/null
  prometheus-alertmanager --config.file="$DIR/alertmanager.yml" --storage.path="$DIR/alertmanager-data" \
    --web.listen-address="127.0.0.1:$AM_PORT" --cluster.listen-address= >"$DIR/alertmanager.log" 2>&1 &
  echo $! > "$DIR/alertmanager.pid"
  prometheus --config.file="$DIR/prometheus.yml" --storage.tsdb.path="$DIR/prometheus-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" --rules.alert.resend-delay=1s --web.enable-lifecycle \
    >"$DIR/prometheus.log" 2>&1 &
  echo $! > "$DIR/prometheus.pid"
  wait_ready "http://127.0.0.1:$AM_PORT/-/ready" alertmanager
  wait_ready "http://127.0.0.1:$PROM_PORT/-/ready" prometheus
}

stop() {
  for name in prometheus alertmanager; do
    if [ -f "$DIR/$name.pid" ]; then
      pid=$(cat "$DIR/$name.pid")
      kill "$pid" 2>/dev/null || true
      # Wait for it to go: a restart must not find the port or the storage still in use.
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$DIR/$name.pid"
    fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  reload)
    # A running Prometheus takes the configuration written now without losing its data.
    write_configs
    promtool check config "$DIR/prometheus.yml" >/dev/null
    curl -fsS -X POST "http://127.0.0.1:$PROM_PORT/-/reload"
    ;;
  env)
    echo "AIOPS_TEST_PROMETHEUS_URL=http://127.0.0.1:$PROM_PORT"
    echo "AIOPS_TEST_ALERTMANAGER_URL=http://127.0.0.1:$AM_PORT"
    echo "AIOPS_TEST_EXPORTER_PORT=$EXPORTER_PORT"
    echo "AIOPS_TEST_ENGINE_PORT=$ENGINE_PORT"
    echo "AIOPS_TEST_INGEST_TOKEN=$TOKEN"
    ;;
  *) echo "usage: $0 start|stop|reload|env" >&2; exit 2 ;;
esac
