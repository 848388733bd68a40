#!/usr/bin/env bash
# Runs the whole test suite. Real services that integration tests need are started here and stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv
cleanup() {
  # Services started by later steps register their stop commands here.
  :
}
trap cleanup EXIT

bash scripts/system-packages.sh
"$VENV/bin/lint-imports"
"$VENV/bin/aiops" playbooks validate playbooks
"$VENV/bin/aiops" playbooks test playbooks/tests/*.yaml
"$VENV/bin/pytest" -q -p no:cacheprovider "$@"
