"""Empty databases for store-backed tests: a SQLite file of the test's own, or the PostgreSQL server named by
AIOPS_TEST_POSTGRES_URL with its ``public`` schema dropped and created again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

POSTGRES_URL = os.environ.get("AIOPS_TEST_POSTGRES_URL")


async def empty_database(kind: str, tmp_path: Path) -> str:
    """The URL of an empty database of ``kind`` ("sqlite" or "postgres"); skips the test when no PostgreSQL server
    is configured."""
    if kind == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    if POSTGRES_URL is None:
        pytest.skip("AIOPS_TEST_POSTGRES_URL is not set (make test starts a PostgreSQL server)")
    # Every test starts from an empty database; the store's migrations build the schema again.
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return POSTGRES_URL
