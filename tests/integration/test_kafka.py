"""The Kafka-driven engine against a real Kafka broker (``make test`` starts one with scripts/services/kafka.sh and
exports AIOPS_TEST_KAFKA_BOOTSTRAP).

Each test uses its own topics and consumer group, so tests do not see each other's records.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from engine.adapters.api.auth import hash_secret
from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import Settings, load_settings
from engine.domain.clock import SystemClock
from engine.domain.events import Anomaly, MetricSample, SeriesKey
from tests.engine.adapters.tokens import BOOK
from tests.support.kafka_records import group_positions, produce, run_engine

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
REPO = Path(__file__).resolve().parents[2]
STEP_S = 60.0
START = 1_700_000_000.0
POINTS = 720
# Isolated spikes, far enough apart for the detector to settle in between.
SPIKE = (300, 500)
# Points per message: batches of one series, as producers are asked to send them.
PER_MESSAGE = 40

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]


@dataclass(frozen=True)
class Topics:
    samples: str
    dead_letters: str
    anomalies: str
    incidents: str
    actions: str


@pytest.fixture
def topics() -> Topics:
    run = uuid.uuid4().hex[:10]
    return Topics(*(f"aiops-test-{run}.{kind}" for kind in ("samples", "dlq", "anomalies", "incidents", "actions")))


def _settings(topics: Topics, tmp_path: Path) -> Settings:
    assert BOOTSTRAP is not None
    return load_settings(
        {},
        kafka_bootstrap=BOOTSTRAP,
        kafka_topics=topics.samples,
        kafka_group_id=f"group-{topics.samples}",
        kafka_dead_letter_topic=topics.dead_letters,
        kafka_anomaly_topic=topics.anomalies,
        kafka_incident_topic=topics.incidents,
        kafka_action_topic=topics.actions,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}",
        playbook_dir=REPO / "playbooks",
        # One signal opens an incident: each spike is one anomalous point.
        incident_min_signals=1,
    )


def _series() -> dict[SeriesKey, np.ndarray]:
    """Three smooth, noisy services; ``checkout`` spikes at the ``SPIKE`` points."""
    rng = np.random.default_rng(7)
    t = np.arange(POINTS)
    out = {}
    for service in ("search", "checkout", "login"):
        values = 100.0 + 10.0 * np.sin(2 * np.pi * t / 240) + rng.normal(0.0, 1.0, POINTS)
        if service == "checkout":
            values[list(SPIKE)] += 80.0
        out[SeriesKey.of("latency_ms", {"service": service, "region": "eu"})] = values
    return out


def _good_messages(series: dict[SeriesKey, np.ndarray]) -> list[tuple[bytes | None, bytes]]:
    messages: list[tuple[bytes | None, bytes]] = []
    for lo in range(0, POINTS, PER_MESSAGE):
        for key, values in series.items():
            points = [(START + i * STEP_S, float(values[i])) for i in range(lo, min(lo + PER_MESSAGE, POINTS))]
            messages.append((series_key_bytes(key), encode_samples(key, points)))
    return messages


async def _read_all(bootstrap: str, topic: str, *, quiet_s: float = 2.0) -> AsyncIterator[tuple[bytes | None, bytes]]:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        idle = 0.0
        while idle < quiet_s:
            fetched = await consumer.getmany(timeout_ms=500)
            idle = 0.0 if fetched else idle + 0.5
            for records in fetched.values():
                for record in records:
                    yield record.key, record.value
    finally:
        await consumer.stop()


async def _documents(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [orjson.loads(value) async for _, value in _read_all(bootstrap, topic)]


async def test_injected_anomalies_reach_the_output_topics(topics: Topics, tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    series = _series()
    await produce(BOOTSTRAP, topics.samples, _good_messages(series))
    engine = await open_kafka_engine(_settings(topics, tmp_path), clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(engine)

    assert engine.summary.samples == POINTS * len(series)
    anomalies = await _documents(BOOTSTRAP, topics.anomalies)
    spiked = [a for a in anomalies if a["labels"] == {"service": "checkout", "region": "eu"}]
    spike_times = {START + i * STEP_S for i in SPIKE}
    assert spike_times <= {a["timestamp"] for a in spiked}, anomalies
    # The injected spike is what was found: most anomalies are the spike's points.
    assert sum(a["timestamp"] in spike_times for a in anomalies) >= len(anomalies) / 2, anomalies
    incidents = await _documents(BOOTSTRAP, topics.incidents)
    opened = [c for c in incidents if c["kind"] == "opened"]
    assert any(c["incident"]["series"] == 'latency_ms{region="eu",service="checkout"}' for c in opened), incidents  # type: ignore[index]


async def test_poison_messages_go_to_the_dead_letter_topic_and_consumption_goes_on(
    topics: Topics, tmp_path: Path
) -> None:
    assert BOOTSTRAP is not None
    series = _series()
    good = _good_messages(series)
    checkout = series_key_bytes(SeriesKey.of("latency_ms", {"service": "checkout", "region": "eu"}))
    poison: list[tuple[bytes | None, bytes]] = [
        (checkout, b"{not json"),
        (checkout, orjson.dumps({"name": "latency_ms", "labels": {"service": "checkout"}, "timestamp": 1.0})),
        (b"someone_else", orjson.dumps({"name": "latency_ms", "timestamp": 1.0, "value": 2.0})),
    ]
    # Poison in the middle of the stream: everything after it must still be processed.
    half = len(good) // 2
    await produce(BOOTSTRAP, topics.samples, good[:half] + poison + good[half:])
    engine = await open_kafka_engine(_settings(topics, tmp_path), clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(engine)

    assert engine.summary.samples == POINTS * len(series)
    consumer = AIOKafkaConsumer(
        topics.dead_letters, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        records = []
        async with asyncio.timeout(20):
            while len(records) < len(poison):
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    assert sorted((r.key, r.value) for r in records) == sorted(poison)
    kinds = sorted(dict(r.headers)["aiops-error-kind"].decode() for r in records)
    assert kinds == ["key", "malformed", "schema"]
    assert all(dict(r.headers)["aiops-source-topic"].decode() == topics.samples for r in records)
    dead = engine.metrics.registry.get_sample_value("aiops_kafka_dead_letters_total", {"kind": "schema"})
    assert dead == 1.0


async def _lag(bootstrap: str, topic: str, group: str) -> dict[int, int]:
    """Per partition, how many records the group has not committed yet."""
    committed, ends = await group_positions(bootstrap, topic, group)
    return {partition: ends[partition] - committed[partition] for partition in ends}


async def test_offsets_are_committed_once_the_batches_are_done(topics: Topics, tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    series = _series()
    await produce(BOOTSTRAP, topics.samples, [*_good_messages(series), (None, b"poison")])
    settings = _settings(topics, tmp_path)
    first = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(first)
    assert first.summary.samples == POINTS * len(series)
    lag = await _lag(BOOTSTRAP, topics.samples, settings.kafka_group_id)
    assert len(lag) > 1
    assert set(lag.values()) == {0}, lag
    # The same group again: everything was committed, so nothing is read twice.
    again = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(again)
    assert again.summary.samples == 0


async def test_two_engines_in_one_group_share_the_work_without_duplicates(topics: Topics, tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    rng = np.random.default_rng(11)
    series = {
        SeriesKey.of("queue_depth", {"shard": str(shard)}): 50.0 + rng.normal(0.0, 2.0, POINTS) for shard in range(12)
    }
    await produce(BOOTSTRAP, topics.samples, _good_messages(series))
    engines = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        engines.append(
            await open_kafka_engine(_settings(topics, tmp_path / name), clock=SystemClock(), idle_stop_s=4.0)
        )
    async with asyncio.TaskGroup() as group:
        for engine in engines:
            group.create_task(run_engine(engine))
    counts = [engine.summary.samples for engine in engines]
    # No sample lost and none processed twice, however the partitions moved between the two members.
    assert sum(counts) == POINTS * len(series), counts
    lag = await _lag(BOOTSTRAP, topics.samples, f"group-{topics.samples}")
    assert set(lag.values()) == {0}, lag


class _Slow:
    """Holds each batch up a little, so that a second member joins while this one is mid-stream."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self.started.set()
        # Long enough that the whole topic takes ~10 s at this pace, well past the second member's join.
        time.sleep(0.02)

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return

    def on_incident_change(self, change: object) -> None:
        return

    def on_action(self, result: object) -> None:
        return


async def test_a_member_joining_mid_stream_takes_over_partitions_without_loss(topics: Topics, tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    rng = np.random.default_rng(5)
    points = 2000
    series = {SeriesKey.of("queue_depth", {"shard": str(s)}): 50.0 + rng.normal(0.0, 2.0, points) for s in range(12)}
    messages = [
        (
            series_key_bytes(key),
            encode_samples(key, [(START + i * STEP_S, float(values[i])) for i in range(lo, lo + 10)]),
        )
        for lo in range(0, points, 10)
        for key, values in series.items()
    ]
    await produce(BOOTSTRAP, topics.samples, messages)
    total = points * len(series)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    small = {"kafka_max_batch": 5}
    slow = _Slow()
    first = await open_kafka_engine(
        _settings(topics, tmp_path / "first").model_copy(update=small),
        clock=SystemClock(),
        observers=[slow],
        idle_stop_s=4.0,
    )
    # Opened beforehand: opening takes turns with the first member's pipeline on this event loop and could outlast
    # the stream; the second member joins the group when it starts running.
    second = await open_kafka_engine(
        _settings(topics, tmp_path / "second").model_copy(update=small), clock=SystemClock(), idle_stop_s=4.0
    )
    async with asyncio.TaskGroup() as group:
        group.create_task(run_engine(first))
        await asyncio.wait_for(slow.started.wait(), 60)
        joined_at = first.summary.samples
        group.create_task(run_engine(second))
    assert 0 < joined_at < total
    assert second.summary.samples > 0
    # At-least-once: a moved partition's new owner resumes from its last checkpoint, whose restored state is as of
    # that point, so samples after it may be detected twice (test_kafka_scaleout shows the incidents still come out
    # once); none is lost.
    assert first.summary.samples + second.summary.samples >= total
    lag = await _lag(BOOTSTRAP, topics.samples, f"group-{topics.samples}")
    assert set(lag.values()) == {0}, lag


async def test_the_kafka_engine_takes_alertmanager_webhooks_into_the_same_incidents(
    topics: Topics, tmp_path: Path
) -> None:
    """`aiops serve` also receives Alertmanager's webhook: an alert opens an incident, published on the incident
    topic like detector incidents."""
    assert BOOTSTRAP is not None
    token = "kafka-engine-ingest-token"
    settings = _settings(topics, tmp_path).model_copy(update={"ingest_bearer_sha256": hash_secret(token)})
    await produce(BOOTSTRAP, topics.samples, _good_messages(_series()))
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=6.0)
    app = engine.api(BOOK)
    running = asyncio.create_task(run_engine(engine))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as http:
        refused = await http.post("/api/v1/alerts", json=ALERT_PAYLOAD)
        accepted = await http.post("/api/v1/alerts", json=ALERT_PAYLOAD, headers={"Authorization": f"Bearer {token}"})
    await running
    assert (refused.status_code, accepted.status_code) == (401, 200)
    incidents = await _documents(BOOTSTRAP, topics.incidents)
    opened = [c["incident"]["series"] for c in incidents if c["kind"] == "opened"]  # type: ignore[index]
    assert 'ALERTS{alertname="ModelServerDown",namespace="serving"}' in opened, opened


ALERT_PAYLOAD = {
    "version": "4",
    "groupKey": '{}:{alertname="ModelServerDown"}',
    "truncatedAlerts": 0,
    "status": "firing",
    "receiver": "aiops",
    "groupLabels": {"alertname": "ModelServerDown"},
    "commonLabels": {"alertname": "ModelServerDown", "namespace": "serving"},
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
    "alerts": [
        {
            "status": "firing",
            "labels": {"alertname": "ModelServerDown", "namespace": "serving"},
            "annotations": {"summary": "the fraud model server is down"},
            "startsAt": "2026-11-26T10:00:00.000Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph?g0.expr=up",
            "fingerprint": "0123456789abcdef",
        }
    ],
}
