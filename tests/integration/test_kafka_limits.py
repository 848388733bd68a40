"""The Kafka-driven engine's bounds against a real broker: messages too large, labels breaking the rules and new
series past AIOPS_MAX_SERIES go to the dead-letter topic with their reason, and consumption goes on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from engine.adapters.kafka.schema import series_key_bytes
from engine.app.kafka_engine import open_kafka_engine
from engine.domain.clock import SystemClock
from engine.domain.events import SeriesKey
from tests.integration.test_kafka import (
    BOOTSTRAP,
    PER_MESSAGE,
    POINTS,
    Topics,
    _good_messages,
    _series,
    _settings,
    topics,
)
from tests.support.kafka_records import produce, run_engine

__all__ = ["topics"]  # the fixture, used by name

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]
MAX_SERIES = 3
MAX_MESSAGE_BYTES = 4096


async def _dead_letters(topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    assert BOOTSTRAP is not None
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    try:
        records: list[ConsumerRecord[bytes, bytes]] = []
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def test_messages_past_the_bounds_are_dead_lettered_with_their_reason(topics: Topics, tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    series = _series()
    values = list(series.values())
    # Two more series than the bound allows, with the same number of points each.
    extra = {SeriesKey.of("latency_ms", {"service": f"extra-{n}", "region": "eu"}): values[n] for n in range(2)}
    too_large = (b"blob", orjson.dumps({"name": "up", "labels": {"blob": "b" * MAX_MESSAGE_BYTES}, "value": 1}))
    nul = SeriesKey.of("up", {"pod": "a\x00b"})
    bad_labels = (
        series_key_bytes(nul),
        orjson.dumps({"name": "up", "labels": {"pod": "a\x00b"}, "timestamp": 1.0, "value": 1.0}),
    )
    good = _good_messages({**series, **extra})
    half = len(good) // 2
    await produce(BOOTSTRAP, topics.samples, [*good[:half], too_large, bad_labels, *good[half:]])
    settings = _settings(topics, tmp_path).model_copy(
        update={"max_series": MAX_SERIES, "kafka_max_message_bytes": MAX_MESSAGE_BYTES}
    )
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(engine)

    # Which three series came first depends on the order partitions were fetched in; that three went on does not.
    assert engine.summary.samples == POINTS * MAX_SERIES
    refused_messages = 2 * POINTS // PER_MESSAGE
    records = await _dead_letters(topics.dead_letters, refused_messages + 2)
    by_kind: dict[str, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in records:
        by_kind.setdefault(dict(record.headers)["aiops-error-kind"].decode(), []).append(record)
    assert {kind: len(found) for kind, found in by_kind.items()} == {
        "series_limit": refused_messages,
        "too_large": 1,
        "labels": 1,
    }
    assert len({record.key for record in by_kind["series_limit"]}) == 2
    [large] = by_kind["too_large"]
    assert large.value == b""
    assert large.key is None
    assert int(dict(large.headers)["aiops-source-bytes"]) == len(too_large[0]) + len(too_large[1])
    [labelled] = by_kind["labels"]
    assert (labelled.key, labelled.value) == bad_labels
    registry = engine.metrics.registry
    for kind in ("too_large", "labels"):
        assert registry.get_sample_value("aiops_kafka_dead_letters_total", {"kind": kind}) == 1.0
    assert registry.get_sample_value("aiops_kafka_dead_letters_total", {"kind": "series_limit"}) == refused_messages
    refused = registry.get_sample_value("aiops_series_refused_total", {"reason": "series_limit"})
    assert refused is not None
    assert refused >= 2
