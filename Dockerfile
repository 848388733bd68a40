# syntax=docker/dockerfile:1
# The aiops-engine image. By default it runs `aiops serve`, the Kafka-driven engine, configured by AIOPS_*
# variables; any other `aiops` command works too, e.g. `docker run --rm IMAGE token oncall --role responder`.
# Build from the repository root: docker build -t aiops-engine .

# The builder installs the project into a virtual environment that the runtime stage copies whole: every feature of
# the engine's commands (the `detectors` extra included: the families on river, scikit-learn and SciPy), no dev
# extras. `--build-arg EXTRAS=` leaves the detectors extra out for an image about 120 MB smaller; choosing one of its
# families there says how to get it back.
FROM python:3.11.13-slim-bookworm AS builder
ARG EXTRAS="detectors"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# binutils' strip, in the builder only. The versions are those of the base image's Debian release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends binutils \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
WORKDIR /src
COPY pyproject.toml README.md ./
COPY detectors ./detectors
COPY engine ./engine
COPY serving ./serving
# What the image does not need goes:
# - the libraries' own test suites, pip and setuptools (nothing installs at run time);
# - debug symbols of the compiled extensions (about 60 MB). The shared libraries that wheels bundle in `*.libs`
#   directories keep theirs: patchelf rewrote them, and strip breaks their segment alignment (numpy then fails to
#   load its BLAS);
# - C sources, Cython sources and type stubs that some wheels ship;
# - the sources of the libraries' modules that start-up imports: those ship as bytecode, written once here for
#   everything `aiops serve` imports with every backend configured, so that it starts without compiling; the
#   engine's own modules keep their sources (deploy/image/bytecode.py says what it writes and why).
COPY deploy/image/bytecode.py /tmp/bytecode.py
RUN /opt/venv/bin/pip install --no-cache-dir --no-compile ".${EXTRAS:+[$EXTRAS]}" \
    && /opt/venv/bin/pip uninstall --yes --quiet pip setuptools wheel \
    && find /opt/venv -depth -type d -name tests -exec rm -rf {} + \
    && find /opt/venv -type f -name "*.so*" -not -path "*.libs/*" -exec strip --strip-unneeded {} + \
    && find /opt/venv -type f \( -name "*.pyi" -o -name "*.pyx" -o -name "*.pxd" -o -name "*.c" -o -name "*.h" \
        -o -name "*.cpp" -o -name "*.hpp" \) -delete \
    && /opt/venv/bin/python /tmp/bytecode.py

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
