# syntax=docker/dockerfile:1
# The aiops-engine image. By default it runs `aiops serve`, the Kafka-driven engine, configured by AIOPS_*
# variables; any other `aiops` command works too, e.g. `docker run --rm IMAGE token oncall --role responder`.
# Build from the repository root: docker build -t aiops-engine .

# The builder installs the project into a virtual environment that the runtime stage copies whole. Only what the
# engine's commands need: no dev extras, and by default neither the `detectors` extra (the families on river,
# scikit-learn and SciPy) nor the `plot` extra (`aiops backtest --plot`); choosing one of them in an image without it
# says how to get it: docker build --build-arg EXTRAS=detectors,plot -t aiops-engine .
FROM python:3.11.13-slim-bookworm AS builder
ARG EXTRAS=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY detectors ./detectors
COPY engine ./engine
COPY serving ./serving
# What the image does not need goes: the libraries' own test suites, pip and setuptools (nothing installs at run
# time), and the bytecode of modules no start-up imports. Bytecode is written for exactly what `aiops serve` imports
# with every backend configured (Kafka, the API, PostgreSQL, MLflow, Kubernetes), so it starts as fast as with
# everything compiled; other modules compile in memory when a command imports them.
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile ".${EXTRAS:+[$EXTRAS]}" \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools wheel \
    && find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && PYTHONDONTWRITEBYTECODE='' /opt/venv/bin/python -c "import engine.app.cli, engine.app.cli_serve, \
engine.app.kafka_engine, engine.app.prometheus_engine, engine.app.action_backends, engine.adapters.api.app, \
engine.adapters.actions.mlflow_aliases, engine.adapters.actions.kubernetes_api, \
engine.adapters.actions.kubernetes_jobs, engine.adapters.actions.kubernetes_workloads, \
sqlalchemy.dialects.postgresql.asyncpg, sqlalchemy.dialects.sqlite.aiosqlite, uvicorn.loops.asyncio, \
uvicorn.protocols.http.h11_impl, uvicorn.lifespan.on"

# The runtime stage uses the same base image, so the venv's interpreter links stay valid.
FROM python:3.11.13-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    AIOPS_HTTP_HOST=0.0.0.0 \
    AIOPS_HTTP_PORT=8080 \
    AIOPS_PLAYBOOK_DIR=/app/playbooks
# A numeric, unprivileged user, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
RUN groupadd --system --gid 10001 aiops \
    && useradd --system --uid 10001 --gid 10001 --home-dir /home/aiops --create-home aiops \
    && mkdir -p /app/.aiops \
    && chown 10001:10001 /app/.aiops
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
COPY playbooks ./playbooks
USER 10001:10001
EXPOSE 8080
# The slim image has no curl: Python asks the engine's liveness endpoint.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AIOPS_HTTP_PORT', '8080'), timeout=4)"]
# Exec form: SIGTERM reaches `aiops serve`, which stops consuming, drains its pipeline and flushes its events.
ENTRYPOINT ["aiops"]
CMD ["serve"]
