#!/usr/bin/env bash
# Helm reads only files inside the chart, so the playbooks (playbooks/*.yaml), the Prometheus rules
# (helm/prometheus-rules/*.yml) and the Grafana dashboards (dashboards/*.json) the project ships are copied into the
# chart's files/ folder. Run this after changing any of them; tests/helm fails while the copies differ from the
# originals.
set -euo pipefail
chart="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
repo="$(cd "$chart/../.." && pwd)"

sync() {  # sync SOURCE_DIR PATTERN TARGET_DIR: TARGET_DIR holds exactly the SOURCE_DIR files matching PATTERN
  local source="$1" pattern="$2" target="$3"
  rm -rf "$target"
  mkdir -p "$target"
  cp "$source"/$pattern "$target"/
}

sync "$repo/playbooks" '*.yaml' "$chart/files/playbooks"
sync "$repo/helm/prometheus-rules" '*.yml' "$chart/files/prometheus-rules"
sync "$repo/dashboards" '*.json' "$chart/files/dashboards"
echo "synced playbooks, Prometheus rules and Grafana dashboards into $chart/files"
