"""Each Kafka message format, produced to a real broker and consumed by the engine: every sample taken, the spike
found, and a malformed message of the format sent to the dead-letter topic with its reason."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, ConsumerRecord
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from engine.app.kafka_engine import open_kafka_engine
from engine.domain.clock import SystemClock
from engine.domain.events import SeriesKey
from tests.integration.test_kafka import (  # noqa: F401  (the fixture)
    BOOTSTRAP,
    PER_MESSAGE,
    POINTS,
    SPIKE,
    START,
    STEP_S,
    Topics,
    _documents,
    _series,
    _settings,
    topics,
)
from tests.support.kafka_records import produce, run_engine
from tests.support.otlp_requests import gauge, number, request

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]
Messages = list[tuple[bytes | None, bytes]]
# Multi-series messages are keyed by what they come from, as the collector's exporter keys them by resource: one
# key, one partition, the series' order kept.
RESOURCE_KEY = b"region=eu"
NS = 1_000_000_000
START_NS = int(START) * NS


def _chunks(series: dict[SeriesKey, np.ndarray]) -> list[list[tuple[SeriesKey, float, float]]]:
    """Every ``PER_MESSAGE`` steps, the points of all series in those steps."""
    return [
        [
            (key, START + i * STEP_S, float(values[i]))
            for key, values in series.items()
            for i in range(lo, min(lo + PER_MESSAGE, POINTS))
        ]
        for lo in range(0, POINTS, PER_MESSAGE)
    ]


def _otlp(points: list[tuple[SeriesKey, float, float]]) -> ExportMetricsServiceRequest:
    data = [number(int(t) * NS, v, {"service": key.label_map["service"]}) for key, t, v in points]
    return request(gauge("latency_ms", data), resource={"region": "eu"})


def _otlp_proto(series: dict[SeriesKey, np.ndarray]) -> Messages:
    return [(RESOURCE_KEY, _otlp(points).SerializeToString()) for points in _chunks(series)]


def _otlp_json(series: dict[SeriesKey, np.ndarray]) -> Messages:
    return [(RESOURCE_KEY, json_format.MessageToJson(_otlp(points)).encode()) for points in _chunks(series)]


def _adapter(series: dict[SeriesKey, np.ndarray]) -> Messages:
    messages: Messages = []
    for points in _chunks(series):
        for key, t, v in points:
            stamp = np.datetime_as_string(np.datetime64(int(t), "s"), unit="s") + "Z"
            labels = {"__name__": key.name, **key.label_map}
            document = {"timestamp": stamp, "value": repr(v), "name": key.name, "labels": labels}
            messages.append((key.name.encode(), orjson.dumps(document)))
    return messages


def _influx(series: dict[SeriesKey, np.ndarray]) -> Messages:
    return [
        (
            RESOURCE_KEY,
            "\n".join(
                f"latency,region=eu,service={key.label_map['service']} ms={v!r} {int(t) * NS}" for key, t, v in points
            ).encode(),
        )
        for points in _chunks(series)
    ]


FORMATS: dict[str, tuple[Callable[[dict[SeriesKey, np.ndarray]], Messages], bytes, str]] = {
    # format: (encoder, a malformed message of it, the kind of fault it is)
    "otlp_proto": (_otlp_proto, b"\x0a\xff\xff\xff\xff\x0f", "malformed"),
    "otlp_json": (_otlp_json, b'{"resourceMetrics": 5}', "malformed"),
    "prometheus_adapter_json": (
        _adapter,
        orjson.dumps({"timestamp": "2023-11-14T22:13:20Z", "value": 1.0, "name": "up", "labels": {}}),
        "schema",
    ),
    "influx_line": (_influx, b"latency,region=eu,service=search ms=1.0", "schema"),
}


async def _dead_letters(topic: str, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    assert BOOTSTRAP is not None
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        async with asyncio.timeout(20):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records.extend(batch)
    finally:
        await consumer.stop()
    return records


@pytest.mark.parametrize("format_name", list(FORMATS))
async def test_each_format_is_consumed_and_its_malformed_messages_dead_lettered(
    format_name: str,
    topics: Topics,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert BOOTSTRAP is not None
    encode, poison, kind = FORMATS[format_name]
    series = _series()
    good = encode(series)
    half = len(good) // 2
    await produce(BOOTSTRAP, topics.samples, [*good[:half], (RESOURCE_KEY, poison), *good[half:]])
    settings = _settings(topics, tmp_path).model_copy(update={"kafka_topic_formats": f"{topics.samples}={format_name}"})
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(engine)

    assert engine.summary.samples == POINTS * len(series)
    [dead] = await _dead_letters(topics.dead_letters, 1)
    headers = dict(dead.headers)
    assert (dead.value, headers["aiops-error-kind"].decode()) == (poison, kind)
    anomalies = await _documents(BOOTSTRAP, topics.anomalies)
    spiked = {a["timestamp"] for a in anomalies if a["labels"] == {"service": "checkout", "region": "eu"}}
    assert {START + i * STEP_S for i in SPIKE} <= spiked, anomalies


async def test_new_series_past_the_bound_are_left_out_of_a_message_whose_other_series_are_taken(
    topics: Topics,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert BOOTSTRAP is not None
    points = [number(START_NS, 1.0, {"service": name}) for name in ("a", "b", "c")]
    message = request(gauge("up", points), resource={}).SerializeToString()
    await produce(BOOTSTRAP, topics.samples, [(RESOURCE_KEY, message)])
    settings = _settings(topics, tmp_path).model_copy(
        update={"kafka_topic_formats": f"{topics.samples}=otlp_proto", "max_series": 2}
    )
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(engine)

    assert engine.summary.samples == 2
    [dead] = await _dead_letters(topics.dead_letters, 1)
    headers = dict(dead.headers)
    assert (dead.value, headers["aiops-error-kind"].decode()) == (message, "series_limit")
    assert 'up{service="c"}' in headers["aiops-error"].decode()
