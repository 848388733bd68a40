"""`aiops watch` as a real process between the real Prometheus and Alertmanager (``make test`` starts them and
Prometheus remote-writes, and Alertmanager posts, to AIOPS_TEST_ENGINE_PORT): the PromQL source polls a signal and
an injected anomaly on it opens an incident; remote-written samples reach the detectors; a firing alert opens an
incident through the webhook."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.adapters.api.auth import Role, hash_secret
from tests.engine.adapters.tokens import SPEC, bearer
from tests.integration.test_prometheus import (
    ENGINE_PORT,
    PROMETHEUS_URL,
    RUN,
    TOKEN,
    Exporter,
    exporter,  # noqa: F401 - the fixture
)
from tests.support.engine_process import REPO
from tests.support.waiting import eventually

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(PROMETHEUS_URL is None, reason="AIOPS_TEST_PROMETHEUS_URL is not set (make test starts it)"),
]
BASE = f"http://127.0.0.1:{ENGINE_PORT}"


@pytest.fixture
def watching(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    assert PROMETHEUS_URL is not None
    queries = [{"signal": "aiops_test_watched", "query": f'aiops_test_watched{{run="{RUN}"}}', "missing": "hold"}]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | {
        "AIOPS_HTTP_PORT": str(ENGINE_PORT),
        "AIOPS_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}",
        "AIOPS_API_TOKENS": SPEC,
        "AIOPS_PROMETHEUS_URL": PROMETHEUS_URL,
        "AIOPS_PROMQL_QUERIES": json.dumps(queries),
        "AIOPS_PROMQL_INTERVAL_S": "0.5",
        "AIOPS_PROMQL_BACKFILL_S": "30",
        "AIOPS_INGEST_BEARER_SHA256": hash_secret(TOKEN),
        "AIOPS_DETECTOR": "ewma",
    }
    log = (tmp_path / "watch.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-c", "from engine.app.cli import main; main()", "watch"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()
        print((tmp_path / "watch.log").read_text())


def _metric(name: str) -> float:
    text = httpx.get(f"{BASE}/metrics", timeout=5, follow_redirects=True).text
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ")]
    return sum(values)


def _incident(series: str, **labels: str) -> Callable[[], dict[str, Any] | None]:
    """This run's incident on ``series`` with ``labels`` (earlier runs' incidents carry another ``run``)."""

    def find() -> dict[str, Any] | None:
        listed = httpx.get(f"{BASE}/api/v1/incidents", headers=bearer(Role.VIEWER), timeout=5).json()
        wanted = {"run": RUN, **labels}
        return next((i for i in listed if i["series"] == series and wanted.items() <= i["labels"].items()), None)

    return find


def test_watch_polls_promql_takes_remote_write_and_alertmanager(
    exporter: Exporter,  # noqa: F811 - the fixture
    watching: subprocess.Popen[bytes],
) -> None:
    exporter.values[f'aiops_test_watched{{run="{RUN}"}}'] = 3.0
    exporter.values[f'aiops_test_value{{run="{RUN}"}}'] = 1.0
    status = eventually(
        lambda: httpx.get(f"{BASE}/api/v1/status", headers=bearer(Role.VIEWER), timeout=5).json(),
        "aiops watch up",
    )
    assert status["source"] == "prometheus"
    assert status["remote_write"] is True
    # Prometheus remote-writes this run's test series to the engine, which passes them to detection.
    eventually(lambda: _metric("aiops_remote_write_samples_total") > 0, "remote-written samples")
    # Polls warm the detector on the steady value first.
    eventually(
        lambda: httpx.get(f"{BASE}/api/v1/status", headers=bearer(Role.VIEWER), timeout=5).json()["samples"] > 60,
        "polled samples",
    )
    time.sleep(20)
    assert _incident("aiops_test_watched")() is None

    exporter.values[f'aiops_test_watched{{run="{RUN}"}}'] = 500.0
    eventually(_incident("aiops_test_watched"), "an incident from the polled signal")

    # The shipped test rule fires above 100; Alertmanager posts to this engine's webhook.
    exporter.values[f'aiops_test_value{{run="{RUN}"}}'] = 500.0
    alert = eventually(_incident("ALERTS", alertname="AiopsTestValueHigh"), "an incident from Alertmanager")
    assert alert["state"] == "open"
    assert watching.poll() is None
