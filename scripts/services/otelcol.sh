#!/usr/bin/env bash
# An OpenTelemetry Collector with only the OTLP receiver and the Kafka exporter, the producer of OTLP metrics on
# Kafka that teams run in front of the engine:
#   scripts/services/otelcol.sh build|env|path
# `build` installs the collector builder (ocb) and compiles the collector from the Go module proxy into the
# git-ignored .bin/ (once per version: a few minutes on two cores, most of it compiling the Kafka client; the Go
# build cache makes rebuilds quick). The tests start the binary themselves, with a configuration of their own.
set -euo pipefail
cd "$(dirname "$0")/../.."
CORE_VERSION=${AIOPS_OTELCOL_VERSION:-v0.165.0}
CONTRIB_VERSION=${AIOPS_OTELCOL_CONTRIB_VERSION:-v0.165.1}
CONFMAP_VERSION=${AIOPS_OTELCOL_CONFMAP_VERSION:-v1.71.0}
ROOT=$PWD
BIN=$ROOT/.bin
SRC=$BIN/src/otelcol-$CORE_VERSION
COLLECTOR=$BIN/otelcol-aiops

log() { echo "otelcol: $*"; }

build() {
  # The stamp names what the binary holds, so that a change of components rebuilds it.
  local stamp=$BIN/.otelcol-$CORE_VERSION-2
  if [ -f "$stamp" ] && [ -x "$COLLECTOR" ]; then return 0; fi
  local t0; t0=$(date +%s)
  mkdir -p "$SRC"
  if [ ! -x "$BIN/ocb-$CORE_VERSION" ]; then
    GOBIN=$SRC go install "go.opentelemetry.io/collector/cmd/builder@$CORE_VERSION"
    mv "$SRC/builder" "$BIN/ocb-$CORE_VERSION"
  fi
  cat > "$SRC/builder.yaml" <<YAML
dist:
  name: otelcol-aiops
  description: OTLP receiver and Kafka exporter, for aiops-engine's tests
  output_path: $SRC/out
receivers:
  - gomod: go.opentelemetry.io/collector/receiver/otlpreceiver $CORE_VERSION
exporters:
  - gomod: github.com/open-telemetry/opentelemetry-collector-contrib/exporter/kafkaexporter $CONTRIB_VERSION
# The collector's default scheme for configuration values is env: its provider must be there.
providers:
  - gomod: go.opentelemetry.io/collector/confmap/provider/fileprovider $CONFMAP_VERSION
  - gomod: go.opentelemetry.io/collector/confmap/provider/envprovider $CONFMAP_VERSION
YAML
  "$BIN/ocb-$CORE_VERSION" --config "$SRC/builder.yaml" --ldflags "-s -w"
  cp "$SRC/out/otelcol-aiops" "$COLLECTOR"
  touch "$stamp"
  log "built the collector $CORE_VERSION (OTLP receiver, Kafka exporter $CONTRIB_VERSION) in $(( $(date +%s) - t0 )) s"
}

case "${1:-}" in
  build) build ;;
  path) echo "$COLLECTOR" ;;
  env) echo "export AIOPS_TEST_OTELCOL=$COLLECTOR" ;;
  *) echo "usage: $0 build|env|path" >&2; exit 2 ;;
esac
