"""``/readyz`` tells the truth within a second: 503 while the store (or, for a Kafka-fed engine, the brokers) cannot
be reached or does not answer, 200 again once it does; other requests meanwhile answer 503, never 500. Against a
PostgreSQL server of the test's own, which the test freezes and stops, and the test Kafka broker."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from benchmarks.services import PrivatePostgres
from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.api.readiness import ReadinessCheck
from engine.adapters.kafka.source import KafkaSampleSource, KafkaSourceConfig, KafkaSourceMetrics
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from tests.engine.adapters.tokens import BOOK, bearer
from tests.support.engine_process import free_port
from tests.support.private_postgres import module_postgres, store_on

KAFKA_BOOTSTRAP = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")

postgres = pytest.fixture(scope="module")(module_postgres)


@pytest.fixture
async def pg_store(postgres: PrivatePostgres) -> AsyncIterator[SqlStore]:
    async with store_on(postgres) as store:
        yield store


def _client(store: SqlStore, readiness: dict[str, ReadinessCheck] | None = None) -> httpx.AsyncClient:
    app = create_app(
        store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK, readiness=readiness
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


async def test_readiness_answers_503_within_a_second_while_the_database_is_frozen(
    postgres: PrivatePostgres, pg_store: SqlStore
) -> None:
    app = create_app(store=pg_store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/readyz")).status_code == 200
        postgres.freeze()
        try:
            for _ in range(2):  # the second probe too: a probe cut short must not leave the next one waiting
                started = time.monotonic()
                answer = await client.get("/readyz")
                assert time.monotonic() - started < 1.0
                assert answer.status_code == 503
                assert answer.json() == {"status": "unready", "checks": {"store": "timeout"}}
        finally:
            postgres.thaw()
        assert (await client.get("/readyz")).status_code == 200
        await asyncio.to_thread(postgres.stop)
        answer = await client.get("/readyz")
        assert (answer.status_code, answer.json()["checks"]) == (503, {"store": "unreachable"})


def _source(bootstrap: str) -> KafkaSampleSource:
    config = KafkaSourceConfig(
        bootstrap_servers=bootstrap, topics=("aiops.readiness",), group_id="readiness", dead_letter_topic="dead"
    )
    return KafkaSampleSource(config, KafkaSourceMetrics(CollectorRegistry()))


async def test_a_kafka_fed_engine_is_not_ready_without_its_brokers(tmp_path: object) -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    # Nothing listens there: the consumer cannot start, so no broker answers.
    source = _source(f"127.0.0.1:{free_port()}")
    async with _client(store, {"kafka": source.check_brokers}) as client:
        answer = await client.get("/readyz")
    await store.close()
    assert (answer.status_code, answer.json()["checks"]) == (503, {"store": "ok", "kafka": "unreachable"})


@pytest.mark.integration
@pytest.mark.skipif(KAFKA_BOOTSTRAP is None, reason="AIOPS_TEST_KAFKA_BOOTSTRAP is not set (make test starts Kafka)")
async def test_a_kafka_fed_engine_is_ready_once_its_consumer_reaches_the_brokers() -> None:
    assert KAFKA_BOOTSTRAP is not None
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    source = _source(KAFKA_BOOTSTRAP)

    async def consume() -> None:
        async for _ in source.batches():
            pass

    async with _client(store, {"kafka": source.check_brokers}) as client, asyncio.TaskGroup() as group:
        consuming = group.create_task(consume())
        deadline = time.monotonic() + 60
        while (answer := await client.get("/readyz")).status_code != 200:
            assert time.monotonic() < deadline, answer.json()
            await asyncio.sleep(0.2)
        source.stop()
        await consuming
    await store.close()


async def test_requests_answer_503_not_500_while_the_database_is_stopped_or_frozen(
    postgres: PrivatePostgres, pg_store: SqlStore
) -> None:
    async with _client(pg_store) as client:
        client.headers.update(bearer(Role.VIEWER))
        assert (await client.get("/api/v1/incidents")).status_code == 200
        await asyncio.to_thread(postgres.stop)
        assert (await client.get("/api/v1/incidents")).status_code == 503
        await asyncio.to_thread(postgres.start)
        postgres.freeze()
        try:
            assert (await client.get("/api/v1/incidents")).status_code == 503
        finally:
            postgres.thaw()
        assert (await client.get("/api/v1/incidents")).status_code == 200
