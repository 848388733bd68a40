"""The whole pipeline on an SQL store: an episode becomes one incident and its playbook's step; steps are stored
before they run, a playbook that cannot be planned fails alone, and remediation workers keep slow actions off the
ingest path."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import numpy as np
import pytest

from detectors.base import BatchDetector, FloatArray, IntArray, State
from engine.adapters.store.sql_store import SqlStore
from engine.app.summary import RunSummary
from engine.core.actions.catalogue import ActionParams
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.playbooks.model import Playbook
from engine.domain.clock import FakeClock
from engine.domain.events import ActionMode, ActionRequest, ActionStatus, IncidentState, MetricSample, SeriesKey
from tests.engine.core.remediating import remediator

HOT = SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": "fraud"})
CALM = SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": "ranker"})


class AboveTen(BatchDetector):
    """Scores 1 for values above 10: enough to drive the pipeline without a learning detector."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    def ensure_capacity(self, capacity: int) -> None:
        self._capacity = max(self._capacity, capacity)

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        return np.where(values > 10, 1.0, 0.0)

    def reset_slot(self, slot: int) -> None:
        return

    def snapshot_slot(self, slot: int) -> State:
        return {}

    def restore_slot(self, slot: int, state: State) -> None:
        return


class ListSource:
    def __init__(self, batches: Sequence[Sequence[MetricSample]]) -> None:
        self._batches = batches

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        for batch in self._batches:
            yield batch


def _batches() -> list[list[MetricSample]]:
    batches = []
    for minute in range(60):
        hot_value = 100.0 if 20 <= minute < 25 else 1.0
        batches.append([MetricSample(HOT, minute * 60.0, hot_value), MetricSample(CALM, minute * 60.0, 1.0)])
    return batches


PLAYBOOK = Playbook.model_validate(
    {
        "name": "restart",
        "triggers": [{"series": "gpu_memory_used_ratio"}],
        "steps": [
            {
                "action": "rollout_restart",
                "params": {"namespace": "serving", "deployment": "{{ incident.labels.deployment }}"},
            }
        ],
    }
)


async def test_pipeline_turns_an_episode_into_one_incident_one_action_and_a_resolution() -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    clock = FakeClock()
    summary = RunSummary()
    pipeline = Pipeline(
        source=ListSource(_batches()),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [PLAYBOOK], clock=clock),
        store=store,
        observer=summary,
        channel_capacity=2,
    )
    await pipeline.run()

    assert summary.samples == 120
    assert summary.anomalies == 5
    [incident] = await store.list_incidents()
    assert incident.series == HOT
    assert incident.state is IncidentState.RESOLVED
    assert incident.opened_at == 21 * 60.0
    assert incident.signal_count == 5
    [action] = summary.actions
    assert action.status is ActionStatus.DRY_RUN
    assert action.detail == "would restart the pods of deployment serving/fraud (rolling)"
    detail = await store.get_incident(incident.id)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated", "updated", "updated", "resolved"]
    assert [record.status for record in detail.actions] == ["dry-run"]
    await store.close()


@pytest.fixture
async def store() -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    yield opened
    await opened.close()


async def test_a_playbook_that_cannot_be_planned_fails_alone_and_the_others_still_run(store: SqlStore) -> None:
    broken = Playbook.model_validate(
        PLAYBOOK.model_dump(by_alias=True) | {"name": "broken", "conditions": ["incident.labels.team == 'x'"]}
    )
    clock = FakeClock()
    summary = RunSummary()
    pipeline = Pipeline(
        source=ListSource(_batches()),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [broken, PLAYBOOK], clock=clock),
        store=store,
        observer=summary,
        workers=0,
    )
    await pipeline.run()

    [incident] = await store.list_incidents()
    assert incident.state is IncidentState.RESOLVED
    records = {record.playbook: record for record in (await store.get_incident(incident.id)).actions}
    assert records.keys() == {"broken", "restart"}
    assert records["broken"].status == ActionStatus.FAILED.value
    assert (records["broken"].detail or "").startswith("not planned: ")
    assert records["restart"].status == ActionStatus.DRY_RUN.value
    # Observers (metrics, the run summary) are told of the failure as of any other outcome.
    assert [(a.request.playbook, a.status) for a in summary.actions] == [
        ("broken", ActionStatus.FAILED),
        ("restart", ActionStatus.DRY_RUN),
    ]


class GatedBackend:
    """A live backend whose calls all wait until the test releases them: the slowest action there can be."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []
        self.finished: list[str] = []

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        self.started.append(request.id)
        await self.release.wait()
        self.finished.append(request.id)
        return "restarted"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        return "nothing to undo"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        return request.id in self.finished


class CountingAcknowledger:
    def __init__(self, expected: int) -> None:
        self.acknowledged = 0
        self.expected = expected
        self.all_acknowledged = asyncio.Event()

    def processed(self, batch: Sequence[MetricSample]) -> None:
        return

    async def acknowledge(self, batch: Sequence[MetricSample]) -> None:
        self.acknowledged += 1
        if self.acknowledged == self.expected:
            self.all_acknowledged.set()


async def _until(condition: object, check: object) -> None:
    for _ in range(500):
        if callable(check) and check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {condition}")


async def test_workers_keep_a_slow_action_off_the_ingest_path_and_finish_every_step_at_the_end(
    store: SqlStore,
) -> None:
    # Three deployments misbehave at once: three steps on three targets, for two workers.
    deployments = ("fraud", "ranker", "scorer")
    batches = [
        [
            MetricSample(
                SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": deployment}),
                minute * 60.0,
                100.0 if 20 <= minute < 25 else 1.0,
            )
            for deployment in deployments
        ]
        for minute in range(60)
    ]
    clock, summary = FakeClock(), RunSummary()
    backend = GatedBackend()
    acknowledger = CountingAcknowledger(len(batches))
    pipeline = Pipeline(
        source=ListSource(batches),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(
            store.ledger, [PLAYBOOK], clock=clock, backends={"rollout_restart": backend}, mode=ActionMode.LIVE
        ),
        store=store,
        observer=summary,
        channel_capacity=2,
        acknowledger=acknowledger,
        clock=clock,
        workers=2,
    )
    running = asyncio.create_task(pipeline.run())
    try:
        # Every batch is taken in and acknowledged while the actions are still waiting on the backend.
        await asyncio.wait_for(acknowledger.all_acknowledged.wait(), timeout=10)
        await _until("both workers calling the backend", lambda: len(backend.started) == 2)
        assert backend.finished == []
        assert not running.done()
        backend.release.set()
        await asyncio.wait_for(running, timeout=10)
    finally:
        backend.release.set()
        running.cancel()
    assert len(backend.finished) == 3
    assert sorted(a.request.params["deployment"] for a in summary.actions) == sorted(deployments)
    assert {a.status for a in summary.actions} == {ActionStatus.SUCCEEDED}
    incidents = await store.list_incidents()
    assert len(incidents) == 3
    for incident in incidents:
        assert incident.state is IncidentState.RESOLVED
        [record] = (await store.get_incident(incident.id)).actions
        assert record.status == ActionStatus.SUCCEEDED.value


class ResolvedByAPersonMidStream:
    """Hot minutes 20-27 of HOT; after minute 22 has been stored, a person resolves its incident in the store, as
    another replica's API would, and the pipeline's clock moves past the decision-sync interval."""

    def __init__(self, store: SqlStore, clock: FakeClock) -> None:
        self._store = store
        self._clock = clock
        self.resolved: str | None = None

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        for minute in range(40):
            if minute == 23:
                self.resolved = await self._resolve_when_stored()
            value = 100.0 if 20 <= minute < 28 else 1.0
            yield [MetricSample(HOT, minute * 60.0, value)]

    async def _resolve_when_stored(self) -> str:
        for _ in range(1000):
            incidents = await self._store.list_incidents()
            if incidents and incidents[0].signal_count >= 3:
                incident = incidents[0]
                await self._store.decide_incident(
                    incident.id,
                    allowed_from=frozenset({IncidentState.OPEN, IncidentState.ACKNOWLEDGED}),
                    to=IncidentState.RESOLVED,
                    kind="resolved",
                    by="someone-on-another-replica",
                    comment="",
                    at=self._clock.now(),
                )
                self._clock.advance(5.0)
                return incident.id
            await asyncio.sleep(0.001)
        raise AssertionError("the incident was never stored")


async def test_an_incident_a_person_resolved_on_another_replica_takes_no_more_signals_here(
    store: SqlStore,
) -> None:
    clock = FakeClock()
    source = ResolvedByAPersonMidStream(store, clock)
    pipeline = Pipeline(
        source=source,
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [], clock=clock),
        store=store,
        observer=RunSummary(),
        channel_capacity=1,
        clock=clock,
        workers=1,
    )
    await pipeline.run()

    incidents = {incident.id: incident for incident in await store.list_incidents()}
    assert source.resolved is not None
    first = incidents.pop(source.resolved)
    # Later signals opened a new incident instead of feeding the resolved one.
    assert first.state is IncidentState.RESOLVED
    assert first.signal_count == 3
    [second] = incidents.values()
    assert second.opened_at > first.opened_at
