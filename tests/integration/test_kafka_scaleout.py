"""Scaling the Kafka-driven engine out, against a real Kafka broker and a real PostgreSQL server: engines in one
consumer group share the partitions, and a partition's learned state (detectors, live incidents, pending signals)
moves with it through the store's checkpoints, so that a rebalance, a killed member or a broker restart changes
nothing in the incidents found.

Every run is compared with a single uninterrupted run over the same records (its own group and database), and both
with what the data holds: spikes injected at known points, each detected once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.services import PrivateBroker, kafka_jars_fetched
from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import Settings, load_settings
from engine.core.incidents import incident_id, series_fingerprint
from engine.domain.clock import SystemClock
from engine.domain.events import SeriesKey
from tests.support.kafka_records import run_engine, wait_committed
from tests.support.serve_process import kafka_serve_env, serving

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
POSTGRES_URL = os.environ.get("AIOPS_TEST_POSTGRES_URL")
REPO = Path(__file__).resolve().parents[2]
START = 1_700_000_000.0
STEP_S = 60.0
POINTS = 600
PARTITIONS = 4
PER_MESSAGE = 10
# Where the stream is cut: the handover happens between these points.
FIRST_PART = 300
SECOND_PART = 400
# Spike positions by series kind: an incident open across the handover and updated after it, one signal before the
# handover and the one that opens the incident after it, a spike on the first point after the handover (a detector
# that starts afresh there misses it), and a quiet series.
PATTERNS: tuple[tuple[int, ...], ...] = ((150, 260, 345, 520), (260, 420), (FIRST_PART, 345), ())
HANDOVER_SPIKE = 2
# Incidents open at their second signal and never resolve by quiet time within the stream.
ENGINE_SETTINGS = {
    "detector": "robust_zscore",
    "incident_min_signals": 2,
    "incident_open_window_s": 1e9,
    "incident_resolve_after_s": 1e9,
}

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]
needs_postgres = pytest.mark.skipif(
    POSTGRES_URL is None, reason="AIOPS_TEST_POSTGRES_URL is not set (make test starts PostgreSQL)"
)


@dataclass(frozen=True)
class Series:
    values: np.ndarray
    spikes: tuple[int, ...]
    partition: int


def _series() -> dict[SeriesKey, Series]:
    """Sixteen smooth, noisy series, four on each partition, each partition holding every spike pattern."""
    rng = np.random.default_rng(3)
    t = np.arange(POINTS)
    out = {}
    for i in range(4 * PARTITIONS):
        values = 100.0 + 10.0 * np.sin(2 * np.pi * t / 240) + rng.normal(0.0, 1.0, POINTS)
        shift = 0 if i % 4 == HANDOVER_SPIKE else 3 * (i // 4)
        spikes = tuple(p + shift for p in PATTERNS[i % 4])
        values[list(spikes)] += 80.0
        # Label values that the series' text must escape: its Kafka key and its checkpoint have to name it exactly.
        labels = {"shard": str(i), "queue": f'jobs "{i}" at C:\\q\n{{a="{i}"}}'}
        out[SeriesKey.of("queue_latency_ms", labels)] = Series(values, spikes, i // 4)
    return out


def _expected(series: dict[SeriesKey, Series]) -> set[tuple[str, str, int]]:
    """(id, fingerprint, signal count) of the incident each series with two spikes or more opens: every spike is
    one signal, the first one names the incident."""
    return {
        (incident_id(series_fingerprint(key), START + s.spikes[0] * STEP_S), series_fingerprint(key), len(s.spikes))
        for key, s in series.items()
        if len(s.spikes) >= 2
    }


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()


async def _produce(bootstrap: str, topic: str, series: dict[SeriesKey, Series], lo: int, hi: int) -> None:
    """Points ``lo`` .. ``hi`` - 1 of every series, in time order, each series on its own partition."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for start in range(lo, hi, PER_MESSAGE):
            for key, s in series.items():
                points = [(START + i * STEP_S, float(s.values[i])) for i in range(start, min(start + PER_MESSAGE, hi))]
                await producer.send(
                    topic, value=encode_samples(key, points), key=series_key_bytes(key), partition=s.partition
                )
        await producer.flush()
    finally:
        await producer.stop()


async def _rows(database_url: str, sql: str, **params: object) -> list[tuple[Any, ...]]:
    """The rows of one query on the engine's database, read with a connection of the test's own."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return [tuple(row) for row in await connection.execute(text(sql), params)]
    finally:
        await engine.dispose()


async def _incidents(database_url: str) -> list[tuple[str, str, int]]:
    rows = await _rows(database_url, "SELECT id, fingerprint, signal_count FROM incidents ORDER BY id")
    return [(str(i), str(f), int(n)) for i, f, n in rows]


async def _signal_timeline(database_url: str) -> list[tuple[str, str, float]]:
    """The timeline rows that signals wrote (opened, updated), in order: each signal's row once."""
    rows = await _rows(
        database_url,
        "SELECT incident_id, kind, at FROM incident_events WHERE kind IN ('opened', 'updated')"
        " ORDER BY incident_id, at, kind",
    )
    return [(str(i), str(k), float(a)) for i, k, a in rows]


async def _checkpointed_series(database_url: str, group: str) -> int:
    rows = await _rows(database_url, "SELECT count(*) FROM series_checkpoints WHERE group_id = :group", group=group)
    return int(rows[0][0])


def _assert_same_incidents(
    found: list[tuple[str, str, int]], reference: list[tuple[str, str, int]], expected: set[tuple[str, str, int]]
) -> None:
    assert reference == sorted(expected), "the uninterrupted run finds the injected incidents"
    fingerprints = [fingerprint for _, fingerprint, _ in found]
    assert len(fingerprints) == len(set(fingerprints)), f"an incident was opened twice: {found}"
    assert found == reference


@pytest.fixture
async def databases() -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Makes fresh PostgreSQL databases (the engine's migrations build their schema); drops them afterwards."""
    assert POSTGRES_URL is not None
    admin = create_async_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    created: list[str] = []

    async def create() -> str:
        name = f"aiops_scaleout_{uuid.uuid4().hex[:12]}"
        async with admin.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        created.append(name)
        return make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)

    try:
        yield create
    finally:
        async with admin.connect() as connection:
            for name in created:
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def _settings(bootstrap: str, topic: str, group: str, database_url: str) -> Settings:
    return load_settings(
        {},
        kafka_bootstrap=bootstrap,
        kafka_topics=topic,
        kafka_group_id=group,
        kafka_dead_letter_topic=f"{topic}.dlq",
        kafka_anomaly_topic=f"{topic}.anomalies",
        kafka_incident_topic=f"{topic}.incidents",
        kafka_action_topic=f"{topic}.actions",
        database_url=database_url,
        playbook_dir=REPO / "playbooks",
        **ENGINE_SETTINGS,
    )


async def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


@needs_postgres
async def test_a_rebalance_hands_the_learned_state_of_moved_partitions_over(
    databases: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    """Two engines in one group: the second joins after the first has learned half the stream, takes some of its
    partitions with their checkpointed state, and the incidents are those of one uninterrupted engine."""
    assert BOOTSTRAP is not None
    topic = f"aiops-scaleout-{uuid.uuid4().hex[:10]}.samples"
    group, reference_group = f"group-{topic}", f"reference-{topic}"
    series = _series()
    await _create_topic(BOOTSTRAP, topic)
    await _produce(BOOTSTRAP, topic, series, 0, FIRST_PART)
    shared = await databases()
    reference_url = f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}"
    first, second, reference = [
        await open_kafka_engine(_settings(BOOTSTRAP, topic, g, url), clock=SystemClock())
        for g, url in ((group, shared), (group, shared), (reference_group, reference_url))
    ]
    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(run_engine(first))
        tasks.create_task(run_engine(reference))
        await wait_committed(BOOTSTRAP, topic, group, timeout_s=30)
        learned = first.summary.samples
        tasks.create_task(run_engine(second))
        await _until(
            lambda: bool(second.source.assigned()) and len(first.source.assigned()) < PARTITIONS,
            30,
            "the second engine gets partitions",
        )
        moved = second.source.assigned()
        await _produce(BOOTSTRAP, topic, series, FIRST_PART, POINTS)
        await wait_committed(BOOTSTRAP, topic, group, timeout_s=30)
        await wait_committed(BOOTSTRAP, topic, reference_group, timeout_s=30)
        for engine in (first, second, reference):
            engine.source.stop()

    assert learned == FIRST_PART * len(series)
    assert moved
    assert second.summary.samples > 0
    # Nothing replayed: the moved partitions went on from their checkpoint.
    assert first.summary.samples + second.summary.samples == POINTS * len(series)
    assert await _checkpointed_series(shared, group) == len(series)
    _assert_same_incidents(await _incidents(shared), await _incidents(reference_url), _expected(series))


def _serve_env(topic: str, group: str, database_url: str) -> dict[str, str]:
    assert BOOTSTRAP is not None
    engine = {f"AIOPS_{name.upper()}": str(value) for name, value in ENGINE_SETTINGS.items()}
    return kafka_serve_env(BOOTSTRAP, topic, group, database_url, **engine)


@needs_postgres
async def test_a_killed_engine_s_partitions_are_taken_over_without_loss_or_duplicates(
    databases: Callable[[], Awaitable[str]], tmp_path: Path
) -> None:
    """Two `aiops serve` processes share a group and a PostgreSQL store; one is SIGKILLed mid-stream; the other
    takes its partitions over from their checkpoints. A third process, alone in its own group and database, sees
    the same stream uninterrupted: both find exactly the same incidents."""
    assert BOOTSTRAP is not None
    topic = f"aiops-scaleout-{uuid.uuid4().hex[:10]}.samples"
    group, reference_group = f"group-{topic}", f"reference-{topic}"
    series = _series()
    await _create_topic(BOOTSTRAP, topic)
    await _produce(BOOTSTRAP, topic, series, 0, FIRST_PART)
    shared, reference_db = await databases(), await databases()
    settings = {
        "a": _serve_env(topic, group, shared),
        "b": _serve_env(topic, group, shared),
        "reference": _serve_env(topic, reference_group, reference_db),
    }
    with serving(tmp_path, ("a", "b", "reference"), settings) as engines:
        a, b = engines["a"], engines["b"]
        deadline = time.monotonic() + 45
        while True:
            owned_a, owned_b = await a.partitions(), await b.partitions()
            if owned_a and owned_b and len(owned_a) + len(owned_b) == PARTITIONS:
                break
            assert time.monotonic() < deadline, f"the two engines did not share the partitions: {owned_a} {owned_b}"
            await asyncio.sleep(0.3)
        await wait_committed(BOOTSTRAP, topic, group, timeout_s=30)
        # Killed right after more records arrive: whatever it had not committed is replayed by its successor.
        await _produce(BOOTSTRAP, topic, series, FIRST_PART, SECOND_PART)
        a.stop(signal.SIGKILL)
        await _produce(BOOTSTRAP, topic, series, SECOND_PART, POINTS)
        # The group notices the dead member after its session times out (10 s), then moves its partitions.
        deadline = time.monotonic() + 40
        while len(await b.partitions()) < PARTITIONS:
            assert time.monotonic() < deadline, "the surviving engine did not take the partitions over"
            await asyncio.sleep(0.5)
        await wait_committed(BOOTSTRAP, topic, group, timeout_s=30)
        await wait_committed(BOOTSTRAP, topic, reference_group, timeout_s=30)
        b.stop()
        engines["reference"].stop()
        assert b.process.returncode == 0, b.log.read_text()[-3000:]

    assert set(owned_a) | set(owned_b) == {f"{topic}:{p}" for p in range(PARTITIONS)}
    _assert_same_incidents(await _incidents(shared), await _incidents(reference_db), _expected(series))
    # The successor processed again what the killed engine had stored after its last checkpoint; the timelines
    # still list each signal once.
    assert await _signal_timeline(shared) == await _signal_timeline(reference_db)


@pytest.mark.skipif(not kafka_jars_fetched(), reason="the Kafka jars are not fetched (scripts/services/kafka.sh fetch)")
async def test_the_engine_reconnects_after_a_broker_restart_and_loses_nothing(tmp_path: Path) -> None:
    broker = PrivateBroker(tmp_path / "kafka")
    await broker.start()
    try:
        topic = f"aiops-scaleout-{uuid.uuid4().hex[:10]}.samples"
        group = f"group-{topic}"
        series = _series()
        await _create_topic(broker.bootstrap, topic)
        await _produce(broker.bootstrap, topic, series, 0, FIRST_PART)
        database = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
        engine = await open_kafka_engine(_settings(broker.bootstrap, topic, group, database), clock=SystemClock())
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(run_engine(engine))
            await wait_committed(broker.bootstrap, topic, group, timeout_s=30)
            await broker.stop()
            await broker.start(keep_data=True)
            await _produce(broker.bootstrap, topic, series, FIRST_PART, POINTS)
            await wait_committed(broker.bootstrap, topic, group, timeout_s=60)
            engine.source.stop()
    finally:
        await broker.stop()

    # Every sample processed once: the restart replayed nothing the checkpoints already held, and lost nothing.
    assert engine.summary.samples == POINTS * len(series)
    assert await _incidents(database) == sorted(_expected(series))
