"""Replicas that start together migrate one empty database without tripping over each other."""

import asyncio
import sys

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

OPEN_STORE = """
import asyncio, sys
from engine.adapters.store.sql_store import SqlStore

async def main() -> None:
    store = await SqlStore.open(sys.argv[1])
    await store.ping()
    await store.close()

asyncio.run(main())
"""


async def test_replicas_opening_an_empty_database_at_once_all_start(database_url: str) -> None:
    # Separate processes, as replicas are (Alembic's migration context is per process).
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", OPEN_STORE, database_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outcomes = await asyncio.gather(*(replica.communicate() for replica in replicas))
    failures = [err.decode() for replica, (_, err) in zip(replicas, outcomes, strict=True) if replica.returncode]
    assert not failures, failures[0]
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            versions = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
    finally:
        await engine.dispose()
    assert len(versions) == 1
