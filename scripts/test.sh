#!/usr/bin/env bash
# Runs the whole test suite. Real services that integration tests need are started here and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
cleanup() {
  bash scripts/services/containers.sh stop
  bash scripts/services/kubernetes.sh stop
  bash scripts/services/mlflow.sh stop
  bash scripts/services/postgres.sh stop
  bash scripts/services/prometheus.sh stop
  bash scripts/services/kafka.sh stop
}
trap cleanup EXIT

started=$(date +%s)
bash scripts/services/postgres.sh start
AIOPS_TEST_POSTGRES_URL=$(bash scripts/services/postgres.sh url)
export AIOPS_TEST_POSTGRES_URL
bash scripts/services/prometheus.sh start
set -a
eval "$(bash scripts/services/prometheus.sh env)"
set +a
bash scripts/services/kafka.sh start
AIOPS_TEST_KAFKA_BOOTSTRAP=$(bash scripts/services/kafka.sh bootstrap)
export AIOPS_TEST_KAFKA_BOOTSTRAP
bash scripts/services/mlflow.sh start
eval "$(bash scripts/services/mlflow.sh env)"
# The control plane is compiled from the Go module proxy on a machine's first run (see docs/real-services.md).
bash scripts/services/kubernetes.sh start
eval "$(bash scripts/services/kubernetes.sh env)"
# The OpenTelemetry Collector that produces OTLP metrics to Kafka in the tests (built once, like the control plane).
bash scripts/services/otelcol.sh build
eval "$(bash scripts/services/otelcol.sh env)"
echo "services ready in $(( $(date +%s) - started )) s"

bash scripts/system-packages.sh
# The image tests build the engine and model server images once a run with buildah and run them with podman, in the
# project's own image store (see scripts/services/containers.sh; its stand-in base image is made once per machine).
eval "$(bash scripts/services/containers.sh env)"
"$VENV/bin/lint-imports"
"$VENV/bin/aiops" playbooks validate playbooks
"$VENV/bin/aiops" playbooks test playbooks/tests/*.yaml
promtool check rules helm/prometheus-rules/*.yml >/dev/null
(cd helm/prometheus-rules && promtool test rules tests/*.yml)
"$VENV/bin/pytest" -q -p no:cacheprovider "$@"
