# The two commands a newcomer needs: `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo test services services-down check lint typecheck layers schema chart-files bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11+ is required ($(PYTHON))"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Replay the bundled scenario through the embedded engine and serve the API on 127.0.0.1:8080 (Ctrl-C stops).
run: $(STAMP)
	$(VENV)/bin/aiops run

## The same scenario as fast as possible, as one JSON summary.
demo: $(STAMP)
	$(VENV)/bin/aiops demo --fast --json

## Install what the tests need, start the real services, run the whole suite, stop the services.
test: $(STAMP)
	bash scripts/test.sh

## Start (or stop) the real servers the integration tests use, for development: PostgreSQL, Prometheus,
## Alertmanager, a Kafka broker, an MLflow server and a Kubernetes control plane on private loopback ports.
services: $(STAMP)
	bash scripts/services/postgres.sh start
	bash scripts/services/prometheus.sh start
	bash scripts/services/kafka.sh start
	bash scripts/services/mlflow.sh start
	bash scripts/services/kubernetes.sh start
	bash scripts/services/otelcol.sh build

services-down:
	bash scripts/services/kubernetes.sh stop
	bash scripts/services/mlflow.sh stop
	bash scripts/services/kafka.sh stop
	bash scripts/services/prometheus.sh stop
	bash scripts/services/postgres.sh stop

## Copy the playbooks and Prometheus rules into the Helm chart (Helm reads only files inside the chart).
chart-files:
	bash helm/aiops-engine/hack/sync-files.sh

## ruff, mypy (strict) and import-linter.
check: lint typecheck layers

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

layers: $(STAMP)
	$(VENV)/bin/lint-imports

## Regenerate the playbook JSON Schema from the models that validate playbooks.
schema: $(STAMP)
	$(VENV)/bin/aiops playbooks schema --out playbooks/playbook.schema.json

bench: $(STAMP)
	$(PY) -m benchmarks.detectors
	$(PY) -m benchmarks.nab --corpus ../shared/datasets/nab --detector default

clean:
	rm -rf $(VENV) .aiops .mypy_cache .pytest_cache .ruff_cache
