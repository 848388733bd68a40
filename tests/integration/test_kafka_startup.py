"""`aiops serve` started while its brokers are away (a rolling restart) waits for them instead of exiting, up to
AIOPS_KAFKA_CONNECT_LIMIT_S; past it, the connection error ends the command (status 3). Against the real broker
(``make test`` exports AIOPS_TEST_KAFKA_BOOTSTRAP), reached through a forwarder that starts listening late."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import Settings, load_settings
from engine.domain.clock import SystemClock
from engine.domain.events import SeriesKey
from tests.support.kafka_records import produce, run_engine

BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
REPO = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)"),
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def _late_forwarder(port: int, after_s: float) -> AsyncIterator[None]:
    """After ``after_s``, forward 127.0.0.1:``port`` to the test broker (which then names itself in its metadata)."""
    assert BOOTSTRAP is not None
    host, broker_port = BOOTSTRAP.rsplit(":", 1)

    async def forward(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        broker_reader, broker_writer = await asyncio.open_connection(host, int(broker_port))
        await asyncio.gather(_pipe(client_reader, broker_writer), _pipe(broker_reader, client_writer))

    servers: list[asyncio.Server] = []

    async def open_late() -> None:
        await asyncio.sleep(after_s)
        servers.append(await asyncio.start_server(forward, "127.0.0.1", port))

    opener = asyncio.create_task(open_late())
    try:
        yield
    finally:
        opener.cancel()
        for server in servers:
            server.close()


def _settings(tmp_path: Path, bootstrap: str, **overrides: object) -> Settings:
    run = uuid.uuid4().hex[:10]
    return load_settings(
        {},
        kafka_bootstrap=bootstrap,
        kafka_topics=f"aiops-test-{run}.samples",
        kafka_group_id=f"group-{run}",
        kafka_dead_letter_topic=f"aiops-test-{run}.dlq",
        kafka_anomaly_topic=f"aiops-test-{run}.anomalies",
        kafka_incident_topic=f"aiops-test-{run}.incidents",
        kafka_action_topic=f"aiops-test-{run}.actions",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}",
        playbook_dir=REPO / "playbooks",
        **overrides,
    )


async def test_brokers_that_answer_only_after_the_engine_started_are_waited_for_and_consumed(tmp_path: Path) -> None:
    assert BOOTSTRAP is not None
    port = _free_port()
    settings = _settings(tmp_path, f"127.0.0.1:{port}", kafka_connect_limit_s=60.0)
    key = SeriesKey.of("latency_ms", {"service": "late"})
    await produce(BOOTSTRAP, settings.kafka_topics, [(series_key_bytes(key), encode_samples(key, [(1.0e9, 1.0)] * 5))])
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    started = time.monotonic()
    async with _late_forwarder(port, after_s=2.0):
        await run_engine(engine)
    assert time.monotonic() - started >= 2.0
    assert engine.summary.samples == 5


async def test_with_no_wait_an_unreachable_broker_ends_the_run_with_the_connection_error(tmp_path: Path) -> None:
    settings = _settings(tmp_path, f"127.0.0.1:{_free_port()}", kafka_connect_limit_s=0.0)
    engine = await open_kafka_engine(settings, clock=SystemClock(), idle_stop_s=3.0)
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError):
        await run_engine(engine, timeout_s=60.0)
    assert time.monotonic() - started < 30.0
