"""Outage tests on a PostgreSQL server of their own (``benchmarks.services.PrivatePostgres``: one they may stop,
restart and freeze, never the shared one): a module-scoped server fixture and a store on it from an empty schema."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text

from benchmarks.services import PrivatePostgres, private_postgres
from engine.adapters.store.sql_store import SqlStore


def module_postgres() -> Iterator[PrivatePostgres]:
    """For a module-scoped fixture: a private cluster, or the test skipped where PostgreSQL is not installed."""
    try:
        with private_postgres() as server:
            yield server
    except LookupError:
        pytest.skip("PostgreSQL is not installed")


@asynccontextmanager
async def store_on(server: PrivatePostgres, outage_limit_s: float = 120.0) -> AsyncIterator[SqlStore]:
    """A store on ``server`` from an empty schema; the server is running (thawed, started) again afterwards."""
    store = await SqlStore.open(server.url)
    async with store._engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await store.close()
    store = await SqlStore.open(server.url, outage_limit_s=outage_limit_s)
    try:
        yield store
    finally:
        server.thaw()
        if not server.running():
            server.start()
        await store.close()
