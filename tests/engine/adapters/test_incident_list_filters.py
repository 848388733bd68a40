"""The store's incident list filtered by severity and by the model of the opening series, with keyset pages."""

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.domain.events import Incident, IncidentChange, IncidentChangeKind, IncidentState, SeriesKey, Severity
from tests.engine.factories import anomaly, incident


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url)
    # Six incidents, newest last: models fraud and recsys in turn, every third critical, the last one resolved.
    for i in range(6):
        series = SeriesKey.of("latency", {"model": "fraud" if i % 2 == 0 else "recsys", "namespace": "serving"})
        severity = Severity.CRITICAL if i % 3 == 0 else Severity.WARNING
        made = incident(id=f"inc-{i}", series=series, severity=severity, opened_at=100.0 + i)
        if i == 5:
            made = replace(made, state=IncidentState.RESOLVED, resolved_at=200.0)
        await opened.apply_change(IncidentChange(IncidentChangeKind.OPENED, made, made.opened_at, anomaly(100.0)))
    # One without a model label: no model filter matches it.
    bare = incident(id="inc-bare", series=SeriesKey.of("queue_depth"), opened_at=50.0)
    await opened.apply_change(IncidentChange(IncidentChangeKind.OPENED, bare, 50.0, anomaly(50.0)))
    yield opened
    await opened.close()


def _ids(incidents: list[Incident]) -> list[str]:
    return [i.id for i in incidents]


async def test_filters_by_severity_model_and_state_together(store: SqlStore) -> None:
    assert _ids(await store.list_incidents(severity=Severity.CRITICAL)) == ["inc-3", "inc-0"]
    assert _ids(await store.list_incidents(model="recsys")) == ["inc-5", "inc-3", "inc-1"]
    assert _ids(await store.list_incidents(model="recsys", severity=Severity.CRITICAL)) == ["inc-3"]
    assert _ids(await store.list_incidents(model="recsys", state=IncidentState.OPEN)) == ["inc-3", "inc-1"]
    assert _ids(await store.list_incidents(model="nope")) == []
    assert _ids(await store.list_incidents(severity=Severity.INFO)) == []
    assert "inc-bare" in _ids(await store.list_incidents())


async def test_filtered_pages_follow_the_cursor(store: SqlStore) -> None:
    first = await store.list_incidents(model="fraud", limit=2)
    assert [i.id for i in first] == ["inc-4", "inc-2"]
    rest = await store.list_incidents(model="fraud", limit=2, before=(first[-1].opened_at, first[-1].id))
    assert [i.id for i in rest] == ["inc-0"]


async def test_a_model_that_looks_like_sql_or_json_is_only_a_value(store: SqlStore) -> None:
    for model in ("' OR '1'='1", '"fraud"', "$.model", "fraud%", "%"):
        assert _ids(await store.list_incidents(model=model)) == []
