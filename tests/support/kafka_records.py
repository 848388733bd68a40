"""The Kafka tests' dealings with a real broker: records written (every one acknowledged before the helper
returns), a consumer group's positions read back, and an in-process engine run against it within a bound."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from engine.app.kafka_engine import KafkaEngine


async def produce(bootstrap: str, topic: str, messages: Iterable[tuple[bytes | None, bytes]]) -> None:
    """Send ``(key, value)`` records in order with an idempotent producer, and wait for the broker to have them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for key, value in messages:
            await producer.send(topic, value=value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def group_positions(bootstrap: str, topic: str, group: str) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition of ``topic``, the offset ``group`` has committed (0 if none) and the end of the log."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(await producer.partitions_for(topic))]
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        committed = {tp.partition: await consumer.committed(tp) or 0 for tp in partitions}
        return committed, {tp.partition: ends[tp] for tp in partitions}
    finally:
        await consumer.stop()


async def wait_committed(bootstrap: str, topic: str, group: str, *, timeout_s: float) -> None:
    """Until ``group`` has committed every record on ``topic`` (failing after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        committed, ends = await group_positions(bootstrap, topic, group)
        if committed == ends:
            return
        assert time.monotonic() < deadline, f"group {group} committed {committed}, the log ends at {ends}"
        await asyncio.sleep(0.5)


async def run_engine(engine: KafkaEngine, timeout_s: float = 120.0) -> None:
    """Run ``engine`` until its source stops (or fail after ``timeout_s``), then close it."""
    try:
        async with asyncio.timeout(timeout_s):
            await engine.run()
    finally:
        await engine.close()
