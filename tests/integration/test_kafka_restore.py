"""Taking a partition over from its checkpoint, against a real broker.

No record of a newly assigned partition reaches the pipeline before the partition's saved state is restored and
its position set, however long the checkpoint takes to load (a slow or briefly frozen database). A record taken
earlier would be scored by a detector that knows nothing of its series and counted in incidents the saved state does
not hold, and then read again from the saved position.

While the partition's backlog is read, its series' event time is how far that partition has been read, not the
newest time of the process's other partitions, so that a restored incident is not resolved as quiet while its
signals are still unread.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Collection, Sequence

import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.adapters.kafka.source import Checkpointing, KafkaSampleSource, KafkaSourceConfig, KafkaSourceMetrics
from engine.core.checkpoints import PartitionCheckpoint, SeriesStates
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.events import SeriesKey
from tests.support.kafka_records import produce

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
START = 1_700_000_000.0
RECORDS = 30
SAVED_POSITION = 20
LOAD_S = 3.0
KEY = SeriesKey.of("latency_ms", {"service": "api"})

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


async def _topic_of_records() -> str:
    """A fresh topic holding RECORDS records of one series: one key, so all on one partition, record ``n`` at
    offset ``n``."""
    assert BOOTSTRAP is not None
    topic = f"aiops-test-{uuid.uuid4().hex[:10]}.samples"
    records = [(series_key_bytes(KEY), encode_samples(KEY, [(START + number, 1.0)])) for number in range(RECORDS)]
    await produce(BOOTSTRAP, topic, records)
    return topic


def _source(topic: str, checkpoints: _SlowCheckpoints, max_batch_records: int = 10_000) -> KafkaSampleSource:
    assert BOOTSTRAP is not None
    config = KafkaSourceConfig(
        bootstrap_servers=BOOTSTRAP,
        topics=(topic,),
        group_id=f"group-{topic}",
        dead_letter_topic=f"{topic}.dlq",
        idle_stop_s=LOAD_S + 3.0,
        max_batch_records=max_batch_records,
    )
    states = SeriesStates(DetectionService.from_registry(DetectionPolicy()), IncidentManager(IncidentPolicy()))
    return KafkaSampleSource(
        config, KafkaSourceMetrics(CollectorRegistry()), checkpointing=Checkpointing(checkpoints, states)
    )


async def test_no_record_of_an_assigned_partition_is_taken_before_its_checkpoint_is_restored() -> None:
    checkpoints = _SlowCheckpoints()
    source = _source(await _topic_of_records(), checkpoints)
    taken: list[float] = []
    async for batch in source.batches():
        taken += [sample.timestamp for sample in batch]
        await source.acknowledge(batch)
    assert checkpoints.loads == 1
    assert taken == [START + number for number in range(SAVED_POSITION, RECORDS)]


async def test_while_a_backlog_is_read_its_series_time_is_how_far_its_partition_has_been_read() -> None:
    source = _source(await _topic_of_records(), _SlowCheckpoints(), max_batch_records=4)
    unplaced = SeriesKey.of("latency_ms", {"service": "elsewhere"})
    seen: list[tuple[float, float | None]] = []
    async for batch in source.batches():
        newest = max(sample.timestamp for sample in batch)
        own_time = source.stream_clock(batch)
        seen.append((newest, own_time(KEY)))
        # A series the source has not placed in a partition has no time of its own.
        assert own_time(unplaced) is None
        await source.acknowledge(batch)
    assert [newest for newest, _ in seen][-1] == START + RECORDS - 1
    assert len(seen) >= 2
    # Behind the partition's end: the newest time read from it; at its end: nothing unread, the watermark applies.
    assert seen == [(newest, newest) for newest, _ in seen[:-1]] + [(START + RECORDS - 1, None)]
