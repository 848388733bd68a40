"""The contract of the incident store port (``engine.core.ports.IncidentStore``), checked against every
implementation: the in-memory store, and the SQL store on SQLite and on PostgreSQL.

The port writes; what each implementation holds is read through its own query side (the SQL store's incident
detail, the in-memory store's list of changes) and, for the planned steps, through the action ledger it puts them
in. The in-memory store keeps no decisions of people, so what only they cause is not part of this suite.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.ledger import ActionLedger
from engine.core.memory import InMemoryStore
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import PendingVerification, Verify
from engine.core.ports import IncidentStore
from engine.domain.errors import NotFoundError
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionStatus,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
    Severity,
    Signal,
)
from tests.engine.factories import LATENCY, anomaly, incident
from tests.support.databases import empty_database

# An incident's timeline as the store holds it: each change's kind and time, in order.
Timeline = list[tuple[str, float]]


@dataclass(frozen=True)
class Held:
    """One implementation of the port, with the readers of what it holds."""

    store: IncidentStore
    ledger: ActionLedger
    timeline: Callable[[str], Awaitable[Timeline]]
    incident: Callable[[str], Awaitable[Incident | None]]
    # The kept samples of an incident's signals, by series text, in time order.
    points: Callable[[str], Awaitable[dict[str, list[tuple[float, float]]]]]


def _in_memory() -> Held:
    store = InMemoryStore()

    async def timeline(incident_id: str) -> Timeline:
        return [(c.kind.value, c.at) for c in store.changes if c.incident.id == incident_id]

    async def latest(incident_id: str) -> Incident | None:
        return next((c.incident for c in reversed(store.changes) if c.incident.id == incident_id), None)

    async def points(incident_id: str) -> dict[str, list[tuple[float, float]]]:
        return {
            series: sorted(kept.items())
            for (incident, series), kept in store.signal_points.items()
            if incident == incident_id
        }

    return Held(store, store, timeline, latest, points)


def _sql(store: SqlStore) -> Held:
    async def timeline(incident_id: str) -> Timeline:
        try:
            detail = await store.get_incident(incident_id)
        except NotFoundError:
            return []
        return [(entry.kind, entry.at) for entry in detail.timeline]

    async def kept(incident_id: str) -> Incident | None:
        try:
            return (await store.get_incident(incident_id)).incident
        except NotFoundError:
            return None

    return Held(store, store.ledger, timeline, kept, store.signal_points)


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def held(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Held]:
    if request.param == "memory":
        yield _in_memory()
        return
    store = await SqlStore.open(await empty_database(request.param, tmp_path))
    yield _sql(store)
    await store.close()


def _series_of(incident_id: str) -> SeriesKey:
    """A series of its own for each incident: one fingerprint has one active incident at a time."""
    return SeriesKey.of(LATENCY.name, {**LATENCY.label_map, "instance": incident_id})


def _opened(incident_id: str, at: float, *, series: SeriesKey | None = None) -> IncidentChange:
    opened = replace(incident(id=incident_id, series=series or _series_of(incident_id), opened_at=at), signal_count=1)
    return IncidentChange(IncidentChangeKind.OPENED, opened, at, anomaly(at, series=opened.series))


def _updated(change: IncidentChange, at: float, *, score: float = 0.99) -> IncidentChange:
    """The next signal of the incident ``change`` left behind."""
    before = change.incident
    signal = Anomaly(before.series, at, 7.5, score, "test", Severity.CRITICAL)
    after = replace(
        before,
        signal_count=before.signal_count + 1,
        last_signal_at=at,
        peak_score=max(before.peak_score, score),
        severity=Severity.CRITICAL,
    )
    return IncidentChange(IncidentChangeKind.UPDATED, after, at, signal)


def _resolved(change: IncidentChange, at: float) -> IncidentChange:
    after = replace(change.incident, state=IncidentState.RESOLVED, resolved_at=at)
    return IncidentChange(IncidentChangeKind.RESOLVED, after, at)


def _step(change: IncidentChange, index: int = 0, *, failure: str | None = None) -> PlannedStep:
    request = ActionRequest.create(
        id=f"{change.incident.id}:restart:{index}",
        incident_id=change.incident.id,
        playbook="restart",
        step=index,
        action="rollout_restart",
        params={"namespace": "serving", "deployment": "fraud-detector"},
        mode=ActionMode.DRY_RUN,
        requested_at=change.at,
        approval_timeout_s=600.0,
        explanation={"incident": {"signals": change.incident.signal_count}},
    )
    verification = PendingVerification(
        request, Verify(condition="value < 0.5", within=300), change.incident.series, {"threshold": 0.5}, change.at
    )
    return PlannedStep(request, Guards.model_validate({"cooldown": "10m"}), verification, failure)


async def _statuses(ledger: ActionLedger, steps: Sequence[PlannedStep]) -> list[ActionStatus | None]:
    return [await ledger.status(step.request.id) for step in steps]


async def test_changes_of_one_call_are_stored_in_order(held: Held) -> None:
    first, second = _opened("inc-1", 100.0), _opened("inc-2", 101.0)
    first_again = _updated(first, 110.0)
    await held.store.apply_changes([first, second, first_again, _updated(first_again, 120.0), _resolved(second, 130.0)])
    assert await held.timeline("inc-1") == [("opened", 100.0), ("updated", 110.0), ("updated", 120.0)]
    assert await held.timeline("inc-2") == [("opened", 101.0), ("resolved", 130.0)]
    kept = await held.incident("inc-1")
    assert kept is not None
    # The last change's figures are the incident's.
    assert (kept.signal_count, kept.last_signal_at, kept.severity) == (3, 120.0, Severity.CRITICAL)
    resolved = await held.incident("inc-2")
    assert resolved is not None
    assert (resolved.state, resolved.resolved_at) == (IncidentState.RESOLVED, 130.0)


async def test_calls_add_to_what_earlier_calls_stored(held: Held) -> None:
    opened = _opened("inc-1", 100.0)
    updated = _updated(opened, 110.0)
    await held.store.apply_changes([opened])
    await held.store.apply_changes([updated])
    await held.store.apply_changes([])
    await held.store.apply_changes([_resolved(updated, 200.0)])
    assert await held.timeline("inc-1") == [("opened", 100.0), ("updated", 110.0), ("resolved", 200.0)]


async def test_resolved_among_names_only_the_resolved_incidents_asked_about(held: Held) -> None:
    changes = [_opened(f"inc-{i}", 100.0 + i) for i in range(4)]
    await held.store.apply_changes([*changes, _resolved(changes[1], 200.0), _resolved(changes[3], 201.0)])
    assert await held.store.resolved_among(["inc-0", "inc-1", "inc-2", "inc-3", "never-stored"]) == {"inc-1", "inc-3"}
    # Only the incidents asked about, even when others are resolved.
    assert await held.store.resolved_among(["inc-0", "inc-3"]) == {"inc-3"}
    assert await held.store.resolved_among([]) == set()


async def test_planned_steps_land_in_the_ledger_with_their_changes(held: Held) -> None:
    opened = _opened("inc-1", 100.0)
    updated = _updated(opened, 110.0)
    steps = [_step(updated, 0), _step(updated, 1), _step(updated, 2, failure="not planned: no such deployment")]
    await held.store.apply_changes([opened, updated], planned=steps)
    for step in steps:
        # As planned, with its guards and verification: any replica can carry it out from the ledger alone.
        assert await held.ledger.load(step.request.id) == step
    assert await _statuses(held.ledger, steps) == [ActionStatus.PENDING, ActionStatus.PENDING, ActionStatus.FAILED]
    assert await held.timeline("inc-1") == [("opened", 100.0), ("updated", 110.0)]


async def test_a_replayed_change_is_not_stored_twice_and_figures_never_go_back(held: Held) -> None:
    # After a crash, the records after the last checkpoint are processed again and give the same changes.
    opened = _opened("inc-1", 100.0)
    updated = _updated(opened, 110.0)
    later = _updated(updated, 120.0)
    await held.store.apply_changes([opened, updated])
    await held.store.apply_changes([later])
    await held.store.apply_changes([opened, updated])
    await held.store.apply_changes([updated, later])
    assert await held.timeline("inc-1") == [("opened", 100.0), ("updated", 110.0), ("updated", 120.0)]
    kept = await held.incident("inc-1")
    assert kept is not None
    assert (kept.signal_count, kept.last_signal_at) == (3, 120.0)


async def test_a_replayed_resolution_is_not_stored_twice(held: Held) -> None:
    opened = _opened("inc-1", 100.0)
    resolution = _resolved(opened, 400.0)
    await held.store.apply_changes([opened, resolution])
    await held.store.apply_changes([opened, resolution])
    assert await held.timeline("inc-1") == [("opened", 100.0), ("resolved", 400.0)]
    assert await held.store.resolved_among(["inc-1"]) == {"inc-1"}


async def test_a_replayed_step_keeps_what_the_ledger_made_of_it(held: Held) -> None:
    opened = _opened("inc-1", 100.0)
    step = _step(opened)
    await held.store.apply_changes([opened], planned=[step])
    assert await held.ledger.transition(
        step.request.id, ActionStatus.PENDING, ActionStatus.SKIPPED, "", "engine", at=101.0
    )
    # Planned again from a replay (another replica, a restart), with what a changed playbook would give now.
    replanned = replace(step, guards=Guards())
    await held.store.apply_changes([opened], planned=[replanned])
    assert await held.ledger.status(step.request.id) is ActionStatus.SKIPPED
    assert await held.ledger.load(step.request.id) == step
    assert await held.timeline("inc-1") == [("opened", 100.0)]


def _group_signal(incident_id: str, series: SeriesKey, at: float, *, kind: IncidentChangeKind) -> IncidentChange:
    """What a replica reading ``series`` reports of group ``workload=fraud``'s incident, as the incident manager
    does: its own signal only."""
    signal = Signal(series, at, at, at, 1.0, 0.99, 1, Severity.WARNING)
    local = replace(
        incident(id=incident_id, series=series, opened_at=at),
        fingerprint='group:workload{workload="fraud"}',
        signal_count=1,
        signals=(signal,),
    )
    return IncidentChange(kind, local, at, anomaly(at, series=series))


def _quiet(change: IncidentChange, at: float) -> IncidentChange:
    local = change.incident
    quiet = replace(local, signals=tuple(replace(s, quiet_at=at) for s in local.signals))
    return IncidentChange(IncidentChangeKind.RESOLVED, replace(quiet, state=IncidentState.RESOLVED, resolved_at=at), at)


ERRORS = SeriesKey.of("model_request_errors_ratio", {"model": "fraud-detector", "namespace": "serving"})


async def test_an_opening_of_a_group_with_an_active_incident_joins_it(held: Held) -> None:
    # Two replicas read the latency and the error series of one workload; each opens the group's incident.
    first = _group_signal("inc-a", LATENCY, 100.0, kind=IncidentChangeKind.OPENED)
    second = _group_signal("inc-b", ERRORS, 130.0, kind=IncidentChangeKind.OPENED)
    assert [c.kind for c in await held.store.apply_changes([first])] == [IncidentChangeKind.OPENED]
    planned: list[IncidentChange] = []

    def plan(stored: Sequence[IncidentChange]) -> list[PlannedStep]:
        planned.extend(stored)
        return []

    [joined] = await held.store.apply_changes([second], plan=plan)
    # The second opening is the error signal joining the first replica's incident; steps are planned for that.
    assert (joined.kind, joined.incident.id) == (IncidentChangeKind.JOINED, "inc-a")
    assert planned == [joined]
    assert {s.series for s in joined.incident.signals} == {LATENCY, ERRORS}
    assert (joined.incident.signal_count, joined.incident.last_signal_at) == (2, 130.0)
    assert await held.timeline("inc-a") == [("opened", 100.0), ("joined", 130.0)]
    assert await held.timeline("inc-b") == []
    # Replayed (a restart of the second replica), it changes nothing.
    assert await held.store.apply_changes([second]) == []


async def test_a_group_incident_resolves_only_when_every_signal_is_quiet(held: Held) -> None:
    latency = _group_signal("inc-a", LATENCY, 100.0, kind=IncidentChangeKind.OPENED)
    errors = _group_signal("inc-b", ERRORS, 130.0, kind=IncidentChangeKind.OPENED)
    await held.store.apply_changes([latency, errors])
    # The latency replica's signal goes quiet: the error signal is still anomalous, so the incident stays open.
    [quieted] = await held.store.apply_changes([_quiet(latency, 1000.0)])
    assert quieted.kind is IncidentChangeKind.QUIETED
    assert await held.store.resolved_among(["inc-a"]) == set()
    [resolved] = await held.store.apply_changes([_quiet(errors, 1030.0)])
    assert (resolved.kind, resolved.incident.resolved_at) == (IncidentChangeKind.RESOLVED, 1030.0)
    assert await held.store.resolved_among(["inc-a"]) == {"inc-a"}
    assert await held.timeline("inc-a") == [
        ("opened", 100.0),
        ("joined", 130.0),
        ("quieted", 1000.0),
        ("resolved", 1030.0),
    ]


async def test_signal_samples_are_kept_once_in_time_order(held: Held) -> None:
    opened = _opened("inc-1", 100.0)
    await held.store.apply_changes([opened])
    series = str(opened.incident.series)
    await held.store.add_signal_points([("inc-1", series, 160.0, 0.9), ("inc-1", series, 100.0, 0.5)])
    # Given again (a replay after a crash): nothing is added twice.
    await held.store.add_signal_points([("inc-1", series, 100.0, 0.5), ("inc-1", "other", 130.0, 1.0)])
    assert await held.points("inc-1") == {series: [(100.0, 0.5), (160.0, 0.9)], "other": [(130.0, 1.0)]}
    assert await held.points("inc-2") == {}


async def test_a_call_stores_all_of_its_changes_and_steps_or_none(held: Held) -> None:
    opened = _opened("inc-1", 100.0)
    # A parameter no JSON document can hold: a store that writes documents refuses the step, and with it the call.
    unstorable = _step(opened, 1)
    unstorable = replace(unstorable, request=replace(unstorable.request, params={"deployment": object()}))
    try:
        await held.store.apply_changes([opened, _opened("inc-2", 101.0)], planned=[_step(opened, 0), unstorable])
    except Exception:
        assert await held.timeline("inc-1") == []
        assert await held.timeline("inc-2") == []
        assert await _statuses(held.ledger, [_step(opened, 0), unstorable]) == [None, None]
        return
    assert await held.timeline("inc-1") == [("opened", 100.0)]
    assert await held.timeline("inc-2") == [("opened", 101.0)]
    assert await _statuses(held.ledger, [_step(opened, 0), unstorable]) == [ActionStatus.PENDING] * 2
