"""Incidents by state, counted in the store: what ``aiops_incidents{state}`` reports. Acknowledgements go through
the API (the incident desk), never through the pipeline, so the gauge is recounted after each decision and by the
engine's housekeeping, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.app.bootstrap import EngineBase, RecountingDecisions, open_shared_parts, refresh_incident_counts
from engine.app.settings import load_settings
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import FakeClock
from engine.domain.events import IncidentChange, IncidentChangeKind, IncidentState
from tests.engine.core.test_pipeline import ListSource
from tests.engine.factories import incident

PLAYBOOKS = Path(__file__).resolve().parents[3] / "playbooks"


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url)
    yield opened
    await opened.close()


async def _open(store: SqlStore, *ids: str) -> None:
    for number, id in enumerate(ids):
        opened = incident(id=id, opened_at=100.0 + number)
        await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, opened.opened_at))


async def _resolve(store: SqlStore, id: str) -> None:
    resolved = replace(incident(id=id), state=IncidentState.RESOLVED, resolved_at=900.0)
    await store.apply_change(IncidentChange(IncidentChangeKind.RESOLVED, resolved, 900.0))


def _gauge(metrics: EngineMetrics) -> dict[str, float | None]:
    return {
        state.value: metrics.registry.get_sample_value("aiops_incidents", {"state": state.value})
        for state in IncidentState
    }


async def test_the_store_counts_every_state(store: SqlStore) -> None:
    assert await store.count_incidents_by_state() == dict.fromkeys(IncidentState, 0)
    await _open(store, "a", "b", "c")
    await _resolve(store, "b")
    assert await store.count_incidents_by_state() == {
        IncidentState.OPEN: 2,
        IncidentState.ACKNOWLEDGED: 0,
        IncidentState.RESOLVED: 1,
    }


async def test_people_s_decisions_are_counted_soon_after(store: SqlStore) -> None:
    metrics = EngineMetrics(CollectorRegistry())
    assert _gauge(metrics) == {"open": 0.0, "acknowledged": 0.0, "resolved": 0.0}
    await _open(store, "a", "b", "c")
    await refresh_incident_counts(store, metrics)
    assert _gauge(metrics) == {"open": 3.0, "acknowledged": 0.0, "resolved": 0.0}

    policy = IncidentPolicy(min_signals=1, open_window_s=600, resolve_after_s=900)
    decisions = RecountingDecisions(store, metrics, delay_s=0.5)
    desk = IncidentDesk(decisions, IncidentManager(policy), FakeClock(1_000.0))
    await desk.acknowledge("a", by="alice")
    await decisions.recounted()
    assert _gauge(metrics) == {"open": 2.0, "acknowledged": 1.0, "resolved": 0.0}
    # A burst of decisions is counted once, after the last of them.
    await desk.resolve("b", by="alice")
    await desk.unacknowledge("a", by="bob")
    assert _gauge(metrics) == {"open": 2.0, "acknowledged": 1.0, "resolved": 0.0}
    await decisions.recounted()
    assert _gauge(metrics) == {"open": 2.0, "acknowledged": 0.0, "resolved": 1.0}


async def test_housekeeping_recounts_what_another_replica_changed(database_url: str, tmp_path: Path) -> None:
    settings = load_settings({}, database_url=database_url, playbook_dir=PLAYBOOKS)
    clock = FakeClock(1_000.0)
    parts = await open_shared_parts(settings, clock=clock, summary=None)
    engine = EngineBase(**parts.engine_fields(settings, parts.pipeline(ListSource([]), [])))
    try:
        await engine.recover()
        assert _gauge(engine.metrics) == {"open": 0.0, "acknowledged": 0.0, "resolved": 0.0}
        chores = asyncio.create_task(engine.housekeeping(clock, count_interval_s=5.0))
        # Another replica sharing the database opens two incidents: this engine's pipeline never sees them.
        await _open(engine.store, "x", "y")
        await asyncio.sleep(0.1)
        assert _gauge(engine.metrics)["open"] == 0.0
        clock.advance(5.0)
        for _ in range(500):  # the recount runs on its own task: give it up to 10 s
            if _gauge(engine.metrics)["open"] == 2.0:
                break
            await asyncio.sleep(0.02)
        assert _gauge(engine.metrics) == {"open": 2.0, "acknowledged": 0.0, "resolved": 0.0}
        chores.cancel()
        with pytest.raises(asyncio.CancelledError):
            await chores
    finally:
        await engine.close()
