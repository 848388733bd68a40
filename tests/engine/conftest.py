"""Store-backed tests (the SQL store's adapter tests, the store ports' contract suites) run against each database
the engine supports: SQLite always, PostgreSQL when AIOPS_TEST_POSTGRES_URL names a server (``make test`` starts
one)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_URL = os.environ.get("AIOPS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
        return
    if POSTGRES_URL is None:
        pytest.skip("AIOPS_TEST_POSTGRES_URL is not set (make test starts a PostgreSQL server)")
    # Every test starts from an empty database; the store's migrations build the schema again.
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    yield POSTGRES_URL
