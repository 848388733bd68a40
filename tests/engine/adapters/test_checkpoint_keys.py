"""Checkpointed series states come back under exactly the series they were saved for, whatever its labels hold,
on every database the store supports."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from engine.adapters.store.sql_store import SqlStore
from engine.adapters.store.tables import SeriesCheckpointRow
from engine.core.checkpoints import PartitionCheckpoint, SeriesState
from engine.core.detection import DetectorSlotState
from engine.domain.events import SeriesKey
from tests.engine.factories import anomaly, incident

HOSTILE = [
    SeriesKey.of("latency_ms", {"pod": 'say "hi"'}),
    SeriesKey.of("latency_ms", {"pod": "C:\\temp\\", "path": "\\n is not a line feed"}),
    SeriesKey.of("latency_ms", {"pod": "two\nlines", "empty": ""}),
    SeriesKey.of("latency_ms", {"pod": "ünïcødé ✓ 🚀", "set": '{a="1",b="2"}'}),
    # Text that an unescaped key would read as another label set, saved next to that label set.
    SeriesKey.of("latency_ms", {"pod": '1",zone="2'}),
    SeriesKey.of("latency_ms", {"pod": "1", "zone": "2"}),
    # PostgreSQL's text cannot hold a NUL, and the row key column is 1024 characters wide.
    SeriesKey.of("latency_ms", {"pod": "nul\x00inside"}),
    SeriesKey.of("latency_ms", {"pod": "x" * 5000}),
    SeriesKey.of("latency_ms", {"pod": "x" * 5000, "zone": '"\\\n'}),
    SeriesKey.of("up"),
]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url)
    yield opened
    await opened.close()


@pytest.fixture
async def database(database_url: str, store: SqlStore) -> AsyncIterator[AsyncEngine]:
    """The same database, for reading and writing rows the way other versions of the engine did."""
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def _state(series: SeriesKey, n: float) -> SeriesState:
    return SeriesState(
        DetectorSlotState({"n": n, "mean": 101.5}, {"last_fired": None}),
        incident(series=series),
        (anomaly(100.0, series=series),),
    )


async def _rows(database: AsyncEngine) -> int:
    async with database.connect() as connection:
        return int((await connection.scalar(select(func.count()).select_from(SeriesCheckpointRow))) or 0)


async def test_every_label_set_comes_back_as_saved(store: SqlStore, database: AsyncEngine) -> None:
    states = {series: _state(series, float(i)) for i, series in enumerate(HOSTILE)}
    await store.save_checkpoints("group", [PartitionCheckpoint("samples", 3, 42, states)])
    [loaded] = await store.load_checkpoints("group", [("samples", 3)])
    assert loaded.offset == 42
    assert dict(loaded.states) == states
    # Saved again, each series' row takes the newer state: no second row for any of them.
    newer = {series: _state(series, float(i) + 100.0) for i, series in enumerate(HOSTILE)}
    await store.save_checkpoints("group", [PartitionCheckpoint("samples", 3, 43, newer)])
    [loaded] = await store.load_checkpoints("group", [("samples", 3)])
    assert dict(loaded.states) == newer
    assert await _rows(database) == len(HOSTILE)


async def _save_as_before(database: AsyncEngine, texts: dict[str, SeriesState]) -> None:
    """Rows as versions before documents named their series saved them: the key's text, and a document without
    the series."""
    rows = []
    for text, state in texts.items():
        document = state.document(SeriesKey("unused"))
        del document["series"]
        rows.append(
            {
                "group_id": "group",
                "topic": "samples",
                "partition": 0,
                "series": text,
                "next_offset": 7,
                "state": json.dumps(document),
            }
        )
    async with database.begin() as connection:
        await connection.execute(insert(SeriesCheckpointRow), rows)


async def test_rows_saved_before_documents_named_their_series_come_back_where_their_key_is_certain(
    store: SqlStore, database: AsyncEngine
) -> None:
    plain = SeriesKey.of("latency_ms", {"pod": "a"})
    renamed = SeriesKey.of("latency_ms", {"pod": "b"})
    await store.save_checkpoints("group", [PartitionCheckpoint("samples", 0, 7, {renamed: _state(renamed, 2.0)})])
    await _save_as_before(
        database,
        {
            str(plain): _state(plain, 1.0),
            # Unescaped values: a quote breaks the text, a backslash makes it ambiguous. Both are left out.
            'latency_ms{pod="say "hi""}': _state(plain, 3.0),
            'latency_ms{pod="C:\\\\temp"}': _state(plain, 4.0),
            # The same series as a row that names it: that row is the newer one.
            'latency_ms{pod="b"} ': _state(renamed, 5.0),
        },
    )
    [loaded] = await store.load_checkpoints("group", [("samples", 0)])
    assert dict(loaded.states) == {plain: _state(plain, 1.0), renamed: _state(renamed, 2.0)}
