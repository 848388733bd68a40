"""A real OpenTelemetry Collector (OTLP receiver, Kafka exporter; built by scripts/services/otelcol.sh) produces the
engine's input: metrics sent to the collector over OTLP/HTTP reach the broker as the exporter writes them
(``otlp_proto``), and the engine consumes them, takes every sample and finds the spike."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from engine.app.kafka_engine import open_kafka_engine
from engine.domain.clock import SystemClock
from tests.integration.test_kafka import (  # noqa: F401  (the fixture)
    BOOTSTRAP,
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
from tests.integration.test_kafka_formats import _otlp_proto
from tests.support.kafka_records import run_engine

COLLECTOR = os.environ.get("AIOPS_TEST_OTELCOL")

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
    pytest.mark.skipif(COLLECTOR is None, reason="AIOPS_TEST_OTELCOL is not set (make test builds the collector)"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def collector(topics: Topics, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """The collector's OTLP/HTTP address, exporting metrics to ``topics.samples``."""
    assert COLLECTOR is not None
    assert BOOTSTRAP is not None
    port = _free_port()
    config = tmp_path / "collector.yaml"
    # The exporter's sending queue is off so that an answered request is on the broker, in the order sent; records
    # are keyed by resource, which is how a topic read by several replicas keeps each series on one partition.
    config.write_text(
        f"""
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  kafka:
    brokers: ["{BOOTSTRAP}"]
    metrics:
      topic: {topics.samples}
      encoding: otlp_proto
    partition_metrics_by_resource_attributes: true
    sending_queue:
      enabled: false
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    metrics:
      receivers: [otlp]
      exporters: [kafka]
"""
    )
    log = (tmp_path / "collector.log").open("w")
    process = subprocess.Popen([COLLECTOR, "--config", f"file:{config}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "collector.log").read_text()
            try:
                httpx.post(f"{base}/v1/metrics", content=b"", headers={"Content-Type": "application/x-protobuf"})
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, (tmp_path / "collector.log").read_text()
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


async def _keys(topic: str) -> set[bytes | None]:
    assert BOOTSTRAP is not None
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None)
    await consumer.start()
    keys: set[bytes | None] = set()
    try:
        for batch in (await consumer.getmany(timeout_ms=3000)).values():
            keys |= {record.key for record in batch}
    finally:
        await consumer.stop()
    return keys


async def test_metrics_sent_through_the_collector_are_consumed_and_the_spike_found(
    collector: str,
    topics: Topics,  # noqa: F811
    tmp_path: Path,
) -> None:
    assert BOOTSTRAP is not None
    series = _series()
    async with httpx.AsyncClient(base_url=collector, timeout=30) as client:
        for _, body in _otlp_proto(series):
            answer = await client.post("/v1/metrics", content=body, headers={"Content-Type": "application/x-protobuf"})
            assert answer.status_code == 200, answer.text
    settings = _settings(topics, tmp_path).model_copy(update={"kafka_topic_formats": f"{topics.samples}=otlp_proto"})
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    await run_engine(engine)

    assert engine.summary.samples == POINTS * len(series)
    # One resource, so one key: its records share a partition and keep their order.
    [key] = await _keys(topics.samples)
    assert key
    anomalies = await _documents(BOOTSTRAP, topics.anomalies)
    spiked = {a["timestamp"] for a in anomalies if a["labels"] == {"service": "checkout", "region": "eu"}}
    assert {START + i * STEP_S for i in SPIKE} <= spiked, anomalies
