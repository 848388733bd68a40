"""One incident per problem when the problem's series are read by different replicas: two `aiops serve` processes
in one consumer group, each owning one partition of the topic, against a real Kafka broker and one real PostgreSQL
database. The latency and the error ratio of one model are produced to different partitions and both go wrong a few
minutes apart; the group (by the shipped correlation rules), not the process, decides the incident."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.domain.events import SeriesKey
from tests.support.kafka_records import wait_committed
from tests.support.serve_process import kafka_serve_env, serving

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
POSTGRES_URL = os.environ.get("AIOPS_TEST_POSTGRES_URL")
START = 1_700_000_000.0
STEP_S = 60.0
POINTS = 400
PER_MESSAGE = 10
# The latency breaks first, the errors three minutes later: one problem.
LATENCY_BREAKS, ERRORS_BREAK = 300, 303
FRAUD = {"model": "fraud-detector", "namespace": "serving"}
# series -> (partition, first point of its trouble or None)
SERIES = {
    SeriesKey.of("model_request_latency_p99_seconds", FRAUD): (0, LATENCY_BREAKS),
    SeriesKey.of("model_request_error_ratio", FRAUD): (1, ERRORS_BREAK),
    # Healthy series of another model on both partitions.
    SeriesKey.of("model_request_latency_p99_seconds", {"model": "recommender", "namespace": "serving"}): (1, None),
    SeriesKey.of("model_request_error_ratio", {"model": "recommender", "namespace": "serving"}): (0, None),
}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
    pytest.mark.skipif(POSTGRES_URL is None, reason="AIOPS_TEST_POSTGRES_URL is not set (make test starts PostgreSQL)"),
]


def _values(breaks: int | None, rng: np.random.Generator) -> np.ndarray:
    # Smooth with bounded noise: nothing in the healthy stretch is an outlier, so every incident is the problem's.
    values = 0.1 + 0.003 * np.sin(np.arange(POINTS) / 20.0) + rng.uniform(-0.001, 0.001, POINTS)
    if breaks is not None:
        values[breaks:] *= 5.0
    return values


async def _produce(topic: str, lo: int, hi: int) -> None:
    assert BOOTSTRAP is not None
    rng = np.random.default_rng(7)
    values = {key: _values(breaks, rng) for key, (_, breaks) in SERIES.items()}
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for start in range(lo, hi, PER_MESSAGE):
            for key, (partition, _) in SERIES.items():
                points = [
                    (START + i * STEP_S, float(values[key][i])) for i in range(start, min(start + PER_MESSAGE, hi))
                ]
                await producer.send(topic, encode_samples(key, points), key=series_key_bytes(key), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


@pytest.fixture
async def database() -> AsyncIterator[str]:
    assert POSTGRES_URL is not None
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"aiops_correlation_{uuid.uuid4().hex[:12]}"
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


async def _rows(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql))]
    finally:
        await engine.dispose()


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.3)


async def test_two_replicas_reading_one_problem_s_series_open_one_incident(database: str, tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    topic = f"aiops-correlation-{uuid.uuid4().hex[:10]}.samples"
    group = f"group-{topic}"
    admin = AIOKafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        await admin.close()
    # The shipped playbooks and correlation rules (group by namespace and workload), in dry-run.
    env = kafka_serve_env(
        BOOTSTRAP, topic, group, database, AIOPS_DETECTOR="robust_zscore", AIOPS_INCIDENT_MIN_SIGNALS="1"
    )
    with serving(tmp_path, ("a", "b"), {"a": env, "b": env}) as engines:
        a, b = engines["a"], engines["b"]

        async def shared() -> bool:
            owned = (await a.partitions(), await b.partitions())
            return all(len(p) == 1 for p in owned)

        # Each replica owns one partition, so each sees one of the problem's two series.
        await _until(shared, 60, "the two engines did not take one partition each")
        # Produced as a live stream would arrive: both replicas stay near the same event time. (From a backlog of
        # hours, one replica can run ahead and resolve the group's incident as quiet before the other has read
        # the rest of the problem: see the README on correlation across replicas.)
        await _produce(topic, 0, LATENCY_BREAKS - PER_MESSAGE)
        await wait_committed(BOOTSTRAP, topic, group, timeout_s=60)
        for start in range(LATENCY_BREAKS - PER_MESSAGE, POINTS, PER_MESSAGE):
            await _produce(topic, start, start + PER_MESSAGE)
            await wait_committed(BOOTSTRAP, topic, group, timeout_s=30)
        a.stop()
        b.stop()
        assert (a.process.returncode, b.process.returncode) == (0, 0), a.log.read_text()[-2000:]

    incidents = await _rows(database, "SELECT id, fingerprint, signals FROM incidents")
    timeline = await _rows(database, "SELECT incident_id, kind, at FROM incident_events ORDER BY id")
    assert len(incidents) == 1, (incidents, [t for t in timeline if t[1] != "updated"])
    [(incident_id, fingerprint, signals)] = incidents
    assert fingerprint == 'group:workload{namespace="serving",workload="fraud-detector"}'
    assert isinstance(signals, list)
    assert {s["name"] for s in signals} == {"model_request_latency_p99_seconds", "model_request_error_ratio"}
    kinds = [str(row[0]) for row in await _rows(database, "SELECT kind FROM incident_events ORDER BY id")]
    # One replica opened it; the other's opening became the error signal joining it.
    assert (kinds[0], kinds.count("opened"), kinds.count("joined")) == ("opened", 1, 1), kinds
    assert str(incident_id).startswith("inc-")
