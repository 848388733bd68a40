"""Consumer lag of the Kafka source against a real broker: after each fetch, ``aiops_kafka_consumer_lag{topic,
partition}`` is the partition's high-water mark minus the next offset the engine reads."""

from __future__ import annotations

import os
import uuid

import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.adapters.kafka.source import KafkaSampleSource, KafkaSourceConfig, KafkaSourceMetrics
from engine.domain.events import SeriesKey
from tests.support.kafka_records import produce

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
RECORDS = 25
PER_FETCH = 10

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]


async def test_lag_is_what_the_partition_holds_beyond_the_batches_taken() -> None:
    assert BOOTSTRAP is not None
    topic = f"aiops-test-{uuid.uuid4().hex[:10]}.samples"
    key = SeriesKey.of("latency_ms", {"service": "api"})
    # One key: every record lands on one partition, whichever the broker's default partitioning picks.
    await produce(
        BOOTSTRAP,
        topic,
        [(series_key_bytes(key), encode_samples(key, [(1_700_000_000.0 + number, 1.0)])) for number in range(RECORDS)],
    )

    registry = CollectorRegistry()
    config = KafkaSourceConfig(
        bootstrap_servers=BOOTSTRAP,
        topics=(topic,),
        group_id=f"group-{topic}",
        dead_letter_topic=f"{topic}.dlq",
        max_batch_records=PER_FETCH,
        idle_stop_s=2.0,
    )
    source = KafkaSampleSource(config, KafkaSourceMetrics(registry))
    lags = []
    async for batch in source.batches():
        lags.append((len(batch), _lags(registry, topic)))
        await source.acknowledge(batch)
    assert sum(size for size, _ in lags) == RECORDS
    # Each fetch leaves what it did not take; the last leaves nothing.
    [partition] = lags[0][1]
    expected = [{partition: float(RECORDS - taken)} for taken in _running_totals([size for size, _ in lags])]
    assert [lag for _, lag in lags] == expected
    assert lags[-1][1] == {partition: 0.0}
    assert len(lags) >= 3  # at most PER_FETCH records a fetch


def _running_totals(sizes: list[int]) -> list[int]:
    totals, total = [], 0
    for size in sizes:
        total += size
        totals.append(total)
    return totals


def _lags(registry: CollectorRegistry, topic: str) -> dict[str, float]:
    """partition -> lag of ``topic``, as exported."""
    return {
        sample.labels["partition"]: sample.value
        for family in registry.collect()
        if family.name == "aiops_kafka_consumer_lag"
        for sample in family.samples
        if sample.labels["topic"] == topic
    }
