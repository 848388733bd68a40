import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy.exc import StatementError

from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.ledger import Lease
from engine.core.checkpoints import PartitionCheckpoint, SeriesState
from engine.core.detection import DetectorSlotState
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.steps import PlannedStep
from engine.domain.errors import ConfigurationError, NotFoundError
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionResult,
    ActionStatus,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
)
from tests.engine.factories import LATENCY, anomaly, incident

LEASE = Lease("replica-a", 65.0)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url)
    yield opened
    await opened.close()


def _request(request_id: str = "act-1") -> ActionRequest:
    return ActionRequest.create(
        id=request_id,
        incident_id="inc-1",
        playbook="p",
        step=0,
        action="rollout_restart",
        params={"namespace": "serving", "deployment": "fraud"},
        mode=ActionMode.DRY_RUN,
        requested_at=5.0,
    )


def _step(request_id: str = "act-1") -> PlannedStep:
    return PlannedStep(_request(request_id), Guards())


async def test_incident_changes_build_state_and_timeline(store: SqlStore) -> None:
    opened = incident()
    await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0)))
    resolved = replace(opened, state=IncidentState.RESOLVED, resolved_at=1000.0)
    await store.apply_change(IncidentChange(IncidentChangeKind.RESOLVED, resolved, 1000.0))
    detail = await store.get_incident("inc-1")
    assert detail.incident.state is IncidentState.RESOLVED
    assert detail.incident.series == opened.series
    assert [entry.kind for entry in detail.timeline] == ["opened", "resolved"]
    assert detail.timeline[0].detail["score"] == 0.99
    assert [i.id for i in await store.list_incidents(state=IncidentState.RESOLVED)] == ["inc-1"]
    assert await store.list_incidents(state=IncidentState.OPEN) == []


async def test_a_batch_of_changes_is_stored_together_in_order(store: SqlStore) -> None:
    first, second = incident(id="inc-1", opened_at=100.0), incident(id="inc-2", opened_at=101.0)
    updated = replace(first, signal_count=3, peak_score=0.999, last_signal_at=110.0)
    await store.apply_changes(
        [
            IncidentChange(IncidentChangeKind.OPENED, first, 100.0, anomaly(100.0)),
            IncidentChange(IncidentChangeKind.OPENED, second, 101.0, anomaly(101.0)),
            # The same incident again in the same batch: its row, not a second one, takes the update.
            IncidentChange(IncidentChangeKind.UPDATED, updated, 110.0, anomaly(110.0)),
        ]
    )
    assert [i.id for i in await store.list_incidents()] == ["inc-2", "inc-1"]
    detail = await store.get_incident("inc-1")
    assert (detail.incident.signal_count, detail.incident.peak_score) == (3, 0.999)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated"]
    await store.apply_changes([])
    assert len(await store.list_incidents()) == 2


async def test_a_burst_larger_than_one_lookup_updates_every_incident_it_names(store: SqlStore) -> None:
    # More incidents than one query looks up at once: every one must be found again, none inserted twice.
    opened = [incident(id=f"inc-{i}", opened_at=100.0 + i) for i in range(1_200)]
    await store.apply_changes([IncidentChange(IncidentChangeKind.OPENED, i, i.opened_at) for i in opened])
    await store.decide_incident(
        "inc-7",
        allowed_from=frozenset({IncidentState.OPEN}),
        to=IncidentState.ACKNOWLEDGED,
        kind="acknowledged",
        by="oncall",
        comment="",
        at=2_000.0,
    )
    updates = [
        IncidentChange(IncidentChangeKind.UPDATED, replace(i, signal_count=5, last_signal_at=3_000.0), 3_000.0)
        for i in opened
    ]
    resolved = replace(opened[9], state=IncidentState.RESOLVED, resolved_at=3_001.0)
    await store.apply_changes([*updates, IncidentChange(IncidentChangeKind.RESOLVED, resolved, 3_001.0)])
    counts = await store.count_incidents_by_state()
    assert counts[IncidentState.OPEN] + counts[IncidentState.ACKNOWLEDGED] == 1_199
    assert counts[IncidentState.RESOLVED] == 1
    acknowledged = (await store.get_incident("inc-7")).incident
    # A signal updates the figures but leaves the state people gave it.
    assert (acknowledged.state, acknowledged.signal_count) == (IncidentState.ACKNOWLEDGED, 5)
    detail = await store.get_incident("inc-9")
    assert (detail.incident.state, detail.incident.resolved_at) == (IncidentState.RESOLVED, 3_001.0)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated", "resolved"]


async def test_changes_given_again_after_a_crash_are_not_stored_twice(store: SqlStore) -> None:
    opened = incident()
    second = replace(opened, signal_count=3, peak_score=0.995, last_signal_at=110.0)
    third = replace(opened, signal_count=4, peak_score=0.999, last_signal_at=120.0)
    resolved = replace(third, state=IncidentState.RESOLVED, resolved_at=1_100.0)
    changes = [
        IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0)),
        IncidentChange(IncidentChangeKind.UPDATED, second, 110.0, anomaly(110.0)),
        IncidentChange(IncidentChangeKind.UPDATED, third, 120.0, anomaly(120.0)),
    ]
    await store.apply_changes(changes)
    # The records after an earlier checkpoint, processed again: the same changes, then one that is new.
    await store.apply_changes([*changes[1:], IncidentChange(IncidentChangeKind.RESOLVED, resolved, 1_100.0)])
    # The resolution given again, from a checkpoint taken before it.
    await store.apply_changes([IncidentChange(IncidentChangeKind.RESOLVED, resolved, 1_100.0)])
    detail = await store.get_incident("inc-1")
    assert [(entry.kind, entry.at) for entry in detail.timeline] == [
        ("opened", 100.0),
        ("updated", 110.0),
        ("updated", 120.0),
        ("resolved", 1_100.0),
    ]
    assert (detail.incident.signal_count, detail.incident.peak_score) == (4, 0.999)


async def _run(manager: IncidentManager, store: SqlStore, signals: list[Anomaly]) -> None:
    for signal in signals:
        await store.apply_changes([*manager.advance(signal.timestamp), *manager.observe(signal)])


async def _timelines(store: SqlStore) -> list[tuple[Incident, list[tuple[float, str, dict[str, Any]]]]]:
    details = [await store.get_incident(i.id) for i in await store.list_incidents()]
    return [(d.incident, [(e.at, e.kind, e.detail) for e in d.timeline]) for d in details]


# The first owner checkpointed the series after ``checkpoint_at`` signals and stored every change up to
# ``crash_at``: during the first incident's updates, across its resolution and the second one's opening, and
# from a checkpoint that holds only a pending signal.
@pytest.mark.parametrize(("checkpoint_at", "crash_at"), [(4, 9), (9, 14), (11, 15)])
async def test_a_successor_replaying_from_a_checkpoint_leaves_the_timeline_of_one_uninterrupted_run(
    database_url: str, tmp_path: Path, checkpoint_at: int, crash_at: int
) -> None:
    policy = IncidentPolicy(min_signals=2, resolve_after_s=50.0)
    # Two episodes of one series: the first resolves on quiet time before the second opens another incident.
    times = [*range(100, 130, 3), *range(300, 330, 3), 400]
    signals = [anomaly(float(t), score=0.9 + t / 10_000) for t in times]
    reference = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'reference.db'}")
    store = await SqlStore.open(database_url)
    try:
        await _run(IncidentManager(policy), reference, signals)
        first = IncidentManager(policy)
        await _run(first, store, signals[:checkpoint_at])
        incident, pending = first.series_state(LATENCY)
        await _run(first, store, signals[checkpoint_at:crash_at])
        successor = IncidentManager(policy)
        successor.restore_series(LATENCY, incident, pending)
        await _run(successor, store, signals[checkpoint_at:])
        expected = await _timelines(reference)
        assert [len(timeline) for _, timeline in expected] == [10, 10]
        assert await _timelines(store) == expected
    finally:
        await reference.close()
        await store.close()


async def test_an_older_change_given_again_does_not_set_the_figures_back(store: SqlStore) -> None:
    opened = incident()
    newest = replace(opened, signal_count=5, peak_score=0.999, last_signal_at=150.0)
    await store.apply_changes([IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0))])
    await store.apply_changes([IncidentChange(IncidentChangeKind.UPDATED, newest, 150.0, anomaly(150.0))])
    await store.apply_changes([IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0))])
    detail = await store.get_incident("inc-1")
    assert (detail.incident.signal_count, detail.incident.last_signal_at) == (5, 150.0)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated"]


async def test_an_engine_resolution_after_a_person_s_is_still_listed(store: SqlStore) -> None:
    # Another process that still held the incident resolves it later: not a replay, so the timeline says so.
    opened = incident()
    await store.apply_changes([IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0))])
    await store.decide_incident(
        "inc-1",
        allowed_from=frozenset({IncidentState.OPEN}),
        to=IncidentState.RESOLVED,
        kind="resolved",
        by="oncall",
        comment="",
        at=500.0,
    )
    resolved = replace(opened, state=IncidentState.RESOLVED, resolved_at=1_000.0)
    await store.apply_changes([IncidentChange(IncidentChangeKind.RESOLVED, resolved, 1_000.0)])
    detail = await store.get_incident("inc-1")
    assert [(entry.kind, entry.at) for entry in detail.timeline] == [
        ("opened", 100.0),
        ("resolved", 500.0),
        ("resolved", 1_000.0),
    ]
    assert detail.incident.resolved_at == 500.0


async def test_a_batch_that_fails_stores_none_of_its_changes(store: SqlStore) -> None:
    good = IncidentChange(IncidentChangeKind.OPENED, incident(id="inc-1"), 100.0, anomaly(100.0))
    # A label value that cannot be written as JSON: the second row fails on its way to the database.
    unwritable = incident(id="inc-2", series=SeriesKey("latency", (("pod", cast(str, object())),)))
    with pytest.raises(StatementError):
        await store.apply_changes(
            [good, IncidentChange(IncidentChangeKind.OPENED, unwritable, 101.0)], planned=[_step()]
        )
    assert await store.list_incidents() == []
    # The steps the changes called for are not stored either: they would run for an incident never recorded.
    assert await store.ledger.status("act-1") is None


async def test_changes_and_the_steps_they_call_for_are_stored_together(store: SqlStore) -> None:
    opened = IncidentChange(IncidentChangeKind.OPENED, incident(id="inc-1"), 100.0, anomaly(100.0))
    await store.apply_changes([opened], planned=[_step("act-1"), _step("act-2")])
    assert [i.id for i in await store.list_incidents()] == ["inc-1"]
    assert await store.ledger.status("act-1") is ActionStatus.PENDING
    assert await store.ledger.status("act-2") is ActionStatus.PENDING
    # The same batch again (replayed after a crash) stores neither the incident nor its steps twice.
    await store.apply_changes([opened], planned=[_step("act-1")])
    assert [record.id for record in await store.list_actions()] == ["act-1", "act-2"]


async def test_claim_is_exactly_once_and_survives_reopening(database_url: str) -> None:
    url = database_url
    first = await SqlStore.open(url)
    assert await first.ledger.claim(_step(), LEASE) is True
    assert await first.ledger.claim(_step(), LEASE) is False
    assert await first.ledger.status("act-1") is ActionStatus.PENDING
    await first.ledger.complete(ActionResult(_request(), ActionStatus.DRY_RUN, "would restart", 6.0))
    await first.close()
    reopened = await SqlStore.open(url)
    assert await reopened.ledger.claim(_step(), LEASE) is False
    # Nothing is left to carry out, even for the replica that held the lease.
    assert await reopened.ledger.claim_due(lease=LEASE, now=7.0, limit=10, reclaim_own=True) == []
    [record] = await reopened.list_actions()
    assert (record.status, record.detail, record.finished_at) == ("dry-run", "would restart", 6.0)
    await reopened.close()


async def test_missing_incident_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFoundError):
        await store.get_incident("nope")


async def test_unusable_database_url_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot"):
        await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")


async def test_two_stores_on_one_database_claim_a_request_once(database_url: str) -> None:
    # Two engine replicas, each with its own connection pool, racing for the same step.
    first, second = await SqlStore.open(database_url), await SqlStore.open(database_url)
    outcomes = await asyncio.gather(*(store.ledger.claim(_step(), LEASE) for store in (first, second, first, second)))
    assert sorted(outcomes) == [False, False, False, True]
    await first.close()
    await second.close()


async def test_checkpointed_series_states_read_back_as_saved_even_with_infinities_and_nan(store: SqlStore) -> None:
    plain = SeriesKey.of("latency_ms", {"pod": "a"})
    unbounded = SeriesKey.of("latency_ms", {"pod": "b"})
    states = {
        plain: SeriesState(
            DetectorSlotState({"n": 3.0, "mean": 101.5, "table": [1.0, 2.5]}, {"last_fired": None}),
            incident(series=plain),
            (anomaly(100.0, series=plain),),
        ),
        # Some detectors keep unbounded extremes; they must not come back as null (orjson writes NaN and
        # infinities so).
        unbounded: SeriesState(DetectorSlotState({"low": math.inf, "high": -math.inf, "gap": math.nan}, {})),
    }
    await store.save_checkpoints("group", [PartitionCheckpoint("samples", 0, 42, states)])
    [loaded] = await store.load_checkpoints("group", [("samples", 0)])
    assert (loaded.topic, loaded.partition, loaded.offset) == ("samples", 0, 42)
    assert loaded.states[plain] == states[plain]
    restored = loaded.states[unbounded].detection.detector
    assert restored["low"] == math.inf
    assert restored["high"] == -math.inf
    assert math.isnan(restored["gap"])
