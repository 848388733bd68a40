"""A metric-sample topic read once from its beginning to its current end, as recorded data for backtests.

The reader joins no consumer group and commits nothing, so it never disturbs the engines consuming the topic. It
stops at the end offsets it saw when it started: a topic that keeps growing still gives a bounded replay. Records
that do not decode are counted, not fatal: a backtest reports what it could read and how much it could not.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from engine.adapters.kafka.schema import InvalidMessageError, decode_samples
from engine.domain.errors import ConfigurationError, TemporaryError
from engine.domain.events import SeriesKey
from engine.domain.scenario import RecordedSeries, Scenario


@dataclass(frozen=True)
class RecordedTopic:
    scenario: Scenario
    records: int
    invalid_records: int


async def read_topic(bootstrap_servers: str, topic: str, *, timeout_s: float = 30.0) -> RecordedTopic:
    """Every sample on ``topic`` as a scenario of recorded series (each in time order)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        group_id=None,
        enable_auto_commit=False,
        client_id="aiops-backtest",
        request_timeout_ms=int(timeout_s * 1000),
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        raise TemporaryError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(bootstrap_servers, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        points: dict[SeriesKey, list[tuple[float, float]]] = defaultdict(list)
        records = invalid = 0
        remaining = {tp for tp in partitions if ends[tp] > 0}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=int(timeout_s * 1000))
            if not fetched:
                raise TemporaryError(f"no records from {topic!r} for {timeout_s:g}s before its end was reached")
            for tp, batch in fetched.items():
                for record in batch:
                    if record.offset >= ends[tp]:
                        continue
                    records += 1
                    try:
                        samples = decode_samples(record.value, record.key)
                    except InvalidMessageError:
                        invalid += 1
                        continue
                    for sample in samples:
                        points[sample.series].append((sample.timestamp, sample.value))
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return RecordedTopic(_scenario(topic, points), records, invalid)


async def _partitions(bootstrap_servers: str, topic: str) -> list[int]:
    """The topic's partition numbers, asked of the cluster (a consumer that subscribes to nothing has no metadata)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, client_id="aiops-backtest")
    await admin.start()
    try:
        [description] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = sorted(int(p["partition"]) for p in description.get("partitions", []))
    if description.get("error_code") or not partitions:
        raise ConfigurationError(f"Kafka topic {topic!r} does not exist at {bootstrap_servers}")
    return partitions


def _scenario(topic: str, points: dict[SeriesKey, list[tuple[float, float]]]) -> Scenario:
    if not points:
        raise ConfigurationError(f"Kafka topic {topic!r} holds no valid samples")
    recorded = []
    for key, series_points in sorted(points.items(), key=lambda item: str(item[0])):
        ordered = np.array(sorted(series_points), dtype=np.float64)
        recorded.append(RecordedSeries(key, ordered[:, 0].copy(), ordered[:, 1].copy()))
    steps = [float(np.median(np.diff(r.timestamps))) for r in recorded if len(r.timestamps) > 1]
    return Scenario(
        f"kafka:{topic}", f"samples recorded on Kafka topic {topic}", min(steps or [60.0]), tuple(recorded), ()
    )
