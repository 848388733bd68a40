"""The store outlives its database going away: against a PostgreSQL server of the test's own that it stops,
restarts and freezes (never the shared one), and a SQLite file on a disk that fills up. Writes on the pipeline's
path wait and then succeed, losing and doubling nothing; a frozen server ends a write with an error instead of
holding it; faults waiting cannot fix end at once; passwords never show."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from benchmarks.services import PrivatePostgres
from engine.adapters.store.migrate import SchemaTooNewError
from engine.adapters.store.resilience import (
    Fault,
    StoreRefusedError,
    StoreUnavailableError,
    fault_of,
)
from engine.adapters.store.sql_store import SqlStore
from engine.core.checkpoints import PartitionCheckpoint
from engine.domain.errors import ConfigurationError
from engine.domain.events import IncidentChange, IncidentChangeKind
from tests.engine.factories import anomaly, incident
from tests.support.engine_process import free_port
from tests.support.private_postgres import module_postgres, store_on

RESILIENCE_LOG = "engine.adapters.store.resilience"

postgres = pytest.fixture(scope="module")(module_postgres)


@pytest.fixture
async def pg_store(postgres: PrivatePostgres) -> AsyncIterator[SqlStore]:
    async with store_on(postgres) as store:
        yield store


def _opened(number: int) -> IncidentChange:
    opened = incident(id=f"inc-{number}", opened_at=100.0 + number)
    return IncidentChange(IncidentChangeKind.OPENED, opened, opened.opened_at, anomaly(opened.opened_at))


def _outage_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the store logged about outages: ``began``, ``ended`` or ``skipped``, in order."""
    return [getattr(record, "outage", "") for record in caplog.records if record.name == RESILIENCE_LOG]


async def test_writes_wait_while_the_database_is_stopped_and_none_is_lost_or_doubled(
    postgres: PrivatePostgres, pg_store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=RESILIENCE_LOG)
    changes = [_opened(number) for number in range(40)]
    # Like the pipeline's incident stage: each write is acknowledged (its offsets committed) once it returns.
    acknowledged: list[str] = []
    under_way = asyncio.Event()

    async def incident_stage() -> None:
        for change in changes:
            await pg_store.apply_changes([change])
            acknowledged.append(change.incident.id)
            if len(acknowledged) == 5:
                under_way.set()
            await asyncio.sleep(0.02)

    stage = asyncio.create_task(incident_stage())
    await asyncio.wait_for(under_way.wait(), timeout=30)
    await asyncio.to_thread(postgres.stop)
    at_stop = len(acknowledged)
    await asyncio.sleep(3)
    # Nothing acknowledged that is not stored: the stage waits, it neither skips ahead nor crashes.
    assert len(acknowledged) == at_stop
    assert not stage.done()
    assert pg_store.patience.in_outage

    await asyncio.to_thread(postgres.start)
    await asyncio.wait_for(stage, timeout=60)

    assert acknowledged == [change.incident.id for change in changes]
    stored = await pg_store.list_incidents(limit=1000)
    assert sorted(i.id for i in stored) == sorted(acknowledged)
    # A write retried after its commit's answer was lost is not stored twice.
    timelines = [await pg_store.get_incident(i.id) for i in stored]
    assert all([entry.kind for entry in detail.timeline] == ["opened"] for detail in timelines)
    # One line when the outage began and one when it ended, however many attempts came between.
    assert _outage_records(caplog) == ["began", "ended"]


async def test_a_quick_restart_is_outlived_by_checkpoint_saves_and_loads(
    postgres: PrivatePostgres, pg_store: SqlStore
) -> None:
    await pg_store.save_checkpoints("group", [PartitionCheckpoint("samples", 0, 10, {})])
    # Every pooled connection is closed by the restart; the next calls must not fail on one of them.
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)
    await pg_store.save_checkpoints("group", [PartitionCheckpoint("samples", 0, 20, {})])
    [kept] = await pg_store.load_checkpoints("group", [("samples", 0)])
    assert kept.offset == 20


async def test_writes_wait_while_the_database_is_read_only_as_during_a_failover(pg_store: SqlStore) -> None:
    async def read_only(on: bool) -> None:
        async with pg_store._engine.connect() as connection:
            await connection.execution_options(isolation_level="AUTOCOMMIT")
            setting = "SET default_transaction_read_only = on" if on else "RESET default_transaction_read_only"
            await connection.execute(text(f"ALTER SYSTEM {setting}"))
            await connection.execute(text("SELECT pg_reload_conf()"))

    await read_only(True)
    try:
        writing = asyncio.create_task(pg_store.apply_changes([_opened(1)]))
        await asyncio.sleep(2)
        assert not writing.done()
        assert pg_store.patience.in_outage
    finally:
        await read_only(False)
    await asyncio.wait_for(writing, timeout=30)
    assert [i.id for i in await pg_store.list_incidents()] == ["inc-1"]


async def test_a_frozen_database_ends_a_write_with_an_error_instead_of_holding_it(
    postgres: PrivatePostgres, pg_store: SqlStore
) -> None:
    pg_store.patience.limit_s = 1.0
    postgres.freeze()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as ended:
            await asyncio.wait_for(pg_store.apply_changes([_opened(1)]), timeout=60)
    finally:
        postgres.thaw()
    # The statement's timeout, the outage limit and one more connection attempt.
    assert time.monotonic() - started < 30
    assert fault_of(ended.value.__cause__ or ended.value) is Fault.TRANSIENT


async def test_the_database_refusing_the_engine_ends_at_once(postgres: PrivatePostgres) -> None:
    for url in (
        make_url(postgres.url).set(username="nobody").render_as_string(hide_password=False),
        make_url(postgres.url).set(database="no_such_database").render_as_string(hide_password=False),
    ):
        started = time.monotonic()
        with pytest.raises(StoreRefusedError) as refused:
            await SqlStore.open(url, outage_limit_s=60)
        assert time.monotonic() - started < 10
        assert isinstance(refused.value, ConfigurationError)
        assert fault_of(refused.value.__cause__ or refused.value) is Fault.FATAL


async def test_a_missing_table_is_fatal_and_a_connection_cut_mid_transaction_transient(
    postgres: PrivatePostgres, pg_store: SqlStore
) -> None:
    async with pg_store._engine.begin() as connection:
        await connection.execute(text("DROP TABLE incident_events"))
    with pytest.raises(StoreRefusedError):
        await pg_store.apply_changes([_opened(1)])

    async def cut_mid_transaction() -> None:
        async with pg_store._engine.begin() as connection:
            await connection.execute(text("SELECT 1"))
            await asyncio.to_thread(postgres.stop)
            await connection.execute(text("SELECT 1"))

    with pytest.raises(DBAPIError) as cut:
        await cut_mid_transaction()
    assert fault_of(cut.value) is Fault.TRANSIENT


async def test_an_unreachable_database_past_the_limit_ends_with_store_unavailable_and_no_password() -> None:
    url = f"postgresql+asyncpg://aiops:hunter2-secret@127.0.0.1:{free_port()}/aiops"
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError) as gave_up:
        await SqlStore.open(url, outage_limit_s=1.0)
    assert 1.0 <= time.monotonic() - started < 10
    assert "hunter2-secret" not in str(gave_up.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://aiops:hunter2-secret@127.0.0.1:notaport/aiops",
        "nosuchdialect://aiops:hunter2-secret@127.0.0.1/aiops",
        "sqlite+aiosqlite://aiops:hunter2-secret@/{tmp}/missing/engine.db",
    ],
)
async def test_configuration_errors_never_show_the_database_password(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError) as refused:
        await SqlStore.open(url.format(tmp=tmp_path), outage_limit_s=1.0)
    assert "hunter2-secret" not in str(refused.value)


async def test_a_schema_newer_than_the_engine_is_refused(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    store = await SqlStore.open(url)
    async with store._engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'f00d0000future'"))
    await store.close()
    with pytest.raises(SchemaTooNewError, match="f00d0000future"):
        await SqlStore.open(url)


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs: a disk that fills up (mounting needs root)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=False, capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode().strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


async def test_sqlite_on_a_full_disk_waits_and_goes_on_once_space_is_freed(
    tiny_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=RESILIENCE_LOG)
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tiny_disk / 'engine.db'}", outage_limit_s=60)
    try:
        await store.apply_changes([_opened(0)])
        filler = tiny_disk / "filler"
        with contextlib.suppress(OSError), filler.open("wb") as out:  # until the disk is full
            while True:
                out.write(b"\0" * 4096)
                out.flush()
        # A burst of changes far larger than whatever space is left.
        burst = [_opened(number) for number in range(1, 400)]
        writing = asyncio.create_task(store.apply_changes(burst))
        await asyncio.sleep(2)
        assert not writing.done()
        assert store.patience.in_outage
        filler.unlink()
        await asyncio.wait_for(writing, timeout=30)
        assert len(await store.list_incidents(limit=1000)) == 400
        assert _outage_records(caplog) == ["began", "ended"]
    finally:
        await store.close()
