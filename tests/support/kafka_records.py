"""Records written to a real broker for the Kafka tests: every one acknowledged before the helper returns."""

from __future__ import annotations

from collections.abc import Iterable

from aiokafka import AIOKafkaProducer


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
