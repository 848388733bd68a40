"""The engine image's default command, ``aiops serve``, wired as ``compose.yaml`` wires it: samples from the real
Kafka broker of the tests, the store in their real PostgreSQL server. Samples produced to its topic open an
incident, and SIGTERM stops it cleanly within Compose's grace period."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from engine.adapters.api.auth import Role
from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.domain.events import SeriesKey
from tests.deploy import containers
from tests.engine.adapters.tokens import SPEC, bearer
from tests.support.databases import empty_database
from tests.support.engine_process import free_port
from tests.support.kafka_records import produce
from tests.support.waiting import eventually

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    containers.needs_images,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]
SERIES = SeriesKey.of("latency_ms", {"service": "checkout", "region": "eu"})
START = 1_700_000_000.0
STEP_S = 60.0
POINTS = 400
SPIKE = 320
# compose.yaml's stop_grace_period.
GRACE_S = 30


def _samples() -> list[tuple[bytes | None, bytes]]:
    """A calm, noisy series with one spike, as messages of 50 points."""
    rng = np.random.default_rng(5)
    values = 100.0 + rng.normal(0.0, 1.0, POINTS)
    values[SPIKE] += 80.0
    return [
        (
            series_key_bytes(SERIES),
            encode_samples(SERIES, [(START + i * STEP_S, float(values[i])) for i in range(lo, lo + 50)]),
        )
        for lo in range(0, POINTS, 50)
    ]


def _incidents(base: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = httpx.get(f"{base}/api/v1/incidents", headers=bearer(Role.VIEWER), timeout=5).json()
    return listed


async def test_serve_opens_an_incident_from_kafka_samples_into_postgres_and_stops_on_sigterm(
    engine_image: str, tmp_path: Path
) -> None:
    assert BOOTSTRAP is not None
    database = await empty_database("postgres", tmp_path)
    run = uuid.uuid4().hex[:10]
    topics = {kind: f"aiops-image-{run}.{kind}" for kind in ("samples", "dlq", "anomalies", "incidents", "actions")}
    port = free_port()
    env = {
        "AIOPS_HTTP_PORT": str(port),
        "AIOPS_DATABASE_URL": database,
        "AIOPS_API_TOKENS": SPEC,
        "AIOPS_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "AIOPS_KAFKA_TOPICS": topics["samples"],
        "AIOPS_KAFKA_GROUP_ID": f"group-{topics['samples']}",
        "AIOPS_KAFKA_DEAD_LETTER_TOPIC": topics["dlq"],
        "AIOPS_KAFKA_ANOMALY_TOPIC": topics["anomalies"],
        "AIOPS_KAFKA_INCIDENT_TOPIC": topics["incidents"],
        "AIOPS_KAFKA_ACTION_TOPIC": topics["actions"],
        # One anomalous point opens an incident: the series has one spike.
        "AIOPS_INCIDENT_MIN_SIGNALS": "1",
    }
    base = f"http://127.0.0.1:{port}"
    with containers.running(engine_image, env=env) as container:
        eventually(
            lambda: container.running() and httpx.get(f"{base}/readyz", timeout=2).status_code == 200,
            "the engine in the container to be ready",
            timeout_s=120,
        )
        await produce(BOOTSTRAP, topics["samples"], _samples())
        opened = eventually(lambda: _incidents(base), "an incident opened from the samples", timeout_s=120)
        assert (opened[0]["series"], opened[0]["labels"]) == ("latency_ms", {"service": "checkout", "region": "eu"})

        status, seconds = container.stop(grace_s=GRACE_S)
        assert status == 0, container.logs()
        assert seconds < GRACE_S
        assert "aiops-engine stopped." in container.logs()
