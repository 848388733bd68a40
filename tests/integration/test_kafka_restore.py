"""Restoring a partition's checkpoint against a real broker: no record of a newly assigned partition reaches the
pipeline before the partition's saved state is restored and its position set, however long the checkpoint takes
to load (a slow or briefly frozen database). A record taken earlier would be scored by a detector that knows
nothing of its series and counted in incidents the saved state does not hold, and then read again from the saved
position."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Collection, Sequence

import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.adapters.kafka.source import Checkpointing, KafkaSampleSource, KafkaSourceConfig, KafkaSourceMetrics
from engine.core.checkpoints import PartitionCheckpoint, SeriesStates
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.events import SeriesKey

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
START = 1_700_000_000.0
RECORDS = 30
SAVED_POSITION = 20
LOAD_S = 3.0

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]


class _SlowCheckpoints:
    """A checkpoint store that answers a load after ``LOAD_S`` with a saved position for every partition asked."""

    def __init__(self) -> None:
        self.loads = 0

    async def save_checkpoints(self, group: str, checkpoints: Sequence[PartitionCheckpoint]) -> None:
        pass

    async def load_checkpoints(self, group: str, partitions: Collection[tuple[str, int]]) -> list[PartitionCheckpoint]:
        self.loads += 1
        await asyncio.sleep(LOAD_S)
        return [PartitionCheckpoint(topic, partition, SAVED_POSITION, {}) for topic, partition in partitions]


async def test_no_record_of_an_assigned_partition_is_taken_before_its_checkpoint_is_restored() -> None:
    assert BOOTSTRAP is not None
    topic = f"aiops-test-{uuid.uuid4().hex[:10]}.samples"
    key = SeriesKey.of("latency_ms", {"service": "api"})
    producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, enable_idempotence=True)
    await producer.start()
    try:
        for number in range(RECORDS):
            # One key: every record on one partition, record ``n`` at offset ``n`` (a fresh topic).
            await producer.send(topic, encode_samples(key, [(START + number, 1.0)]), series_key_bytes(key))
        await producer.flush()
    finally:
        await producer.stop()

    config = KafkaSourceConfig(
        bootstrap_servers=BOOTSTRAP,
        topics=(topic,),
        group_id=f"group-{topic}",
        dead_letter_topic=f"{topic}.dlq",
        idle_stop_s=LOAD_S + 3.0,
    )
    checkpoints = _SlowCheckpoints()
    states = SeriesStates(DetectionService.from_registry(DetectionPolicy()), IncidentManager(IncidentPolicy()))
    source = KafkaSampleSource(
        config, KafkaSourceMetrics(CollectorRegistry()), checkpointing=Checkpointing(checkpoints, states)
    )
    taken: list[float] = []
    async for batch in source.batches():
        taken += [sample.timestamp for sample in batch]
        await source.acknowledge(batch)
    assert checkpoints.loads == 1
    assert taken == [START + number for number in range(SAVED_POSITION, RECORDS)]
