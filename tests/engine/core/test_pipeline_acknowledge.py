"""The pipeline acknowledges each batch, in order, only once the batch's incident changes are stored: what lets a
Kafka source commit offsets without losing input."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Sequence

from engine.adapters.store.sql_store import SqlStore
from engine.app.summary import RunSummary
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.playbooks.steps import PlannedStep
from engine.core.ports import IncidentStore, Planning
from engine.core.signal_points import SignalPoint
from engine.domain.clock import FakeClock
from engine.domain.events import Anomaly, Incident, IncidentChange, IncidentState, MetricSample, SeriesKey
from tests.engine.core.remediating import remediator
from tests.engine.core.test_pipeline import HOT, AboveTen, ListSource, _batches


class RecordingAcknowledger:
    def __init__(self, store: SqlStore, incidents: IncidentManager | None = None) -> None:
        self._store = store
        self._incidents = incidents
        self.acknowledged: list[Sequence[MetricSample]] = []
        # Incidents stored at each acknowledgement.
        self.stored: list[int] = []
        # The hot series' incident state when the incident stage said it had worked out each batch: what a
        # checkpoint of that batch's end would keep.
        self.processed_states: list[tuple[Incident | None, tuple[Anomaly, ...]]] = []

    def processed(self, batch: Sequence[MetricSample]) -> None:
        if self._incidents is not None:
            self.processed_states.append(self._incidents.series_state(HOT))

    async def acknowledge(self, batch: Sequence[MetricSample]) -> None:
        self.acknowledged.append(batch)
        self.stored.append(len(await self._store.list_incidents()))


async def test_every_batch_is_acknowledged_in_order_after_its_changes_are_stored() -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    clock = FakeClock()
    acknowledger = RecordingAcknowledger(store)
    batches = _batches()
    pipeline = Pipeline(
        source=ListSource(batches),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [], clock=clock),
        store=store,
        observer=RunSummary(),
        channel_capacity=2,
        acknowledger=acknowledger,
    )
    await pipeline.run()

    assert len(acknowledger.acknowledged) == len(batches)
    assert all(got is sent for got, sent in zip(acknowledger.acknowledged, batches, strict=True))
    # The hot series' second anomaly (minute 21) opens the incident: stored before minute 21 is acknowledged.
    opening = next(i for i, batch in enumerate(batches) if batch[0].series == HOT and batch[0].timestamp == 21 * 60.0)
    assert acknowledger.stored[opening] == 1
    # Not stored from the start: the count above is the opening's doing.
    assert acknowledger.stored[0] == 0
    await store.close()


class SlowStore:
    """An incident store whose every write takes a while, so that detection gets ahead of the incident stage."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.writes = 0

    async def apply_changes(
        self, changes: Sequence[IncidentChange], planned: Sequence[PlannedStep] = (), *, plan: Planning | None = None
    ) -> list[IncidentChange]:
        self.writes += 1
        await asyncio.sleep(0.01)
        return await self._store.apply_changes(changes, planned, plan=plan)

    async def resolved_among(self, incident_ids: Collection[str]) -> set[str]:
        return await self._store.resolved_among(incident_ids)

    async def add_signal_points(self, points: Sequence[SignalPoint]) -> None:
        await self._store.add_signal_points(points)


def _pipeline(
    store: SqlStore,
    incident_store: IncidentStore,
    incidents: IncidentManager,
    acknowledger: RecordingAcknowledger,
    channel_capacity: int,
) -> Pipeline:
    return Pipeline(
        source=ListSource(_batches()),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=incidents,
        remediator=remediator(store.ledger, [], clock=FakeClock()),
        store=incident_store,
        observer=RunSummary(),
        channel_capacity=channel_capacity,
        acknowledger=acknowledger,
    )


async def test_a_backlog_behind_a_slow_store_is_stored_in_fewer_writes_with_the_same_result() -> None:
    results = []
    # The reference: channels of one item, so the incident stage takes one batch at a time, whatever the store does.
    for slow, capacity in ((False, 1), (True, 4)):
        store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
        incident_store = SlowStore(store) if slow else store
        manager = IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600))
        acknowledger = RecordingAcknowledger(store, manager)
        await _pipeline(store, incident_store, manager, acknowledger, capacity).run()
        assert len(acknowledger.acknowledged) == len(_batches())
        incidents = await store.list_incidents()
        timelines = [[entry.kind for entry in (await store.get_incident(i.id)).timeline] for i in incidents]
        stored = ([(i.state, i.signal_count, i.opened_at, i.resolved_at) for i in incidents], timelines)
        # Each batch's checkpoint state is as of its own end, however many batches a write took at once.
        results.append((stored, acknowledger.processed_states))
        if isinstance(incident_store, SlowStore):
            # 60 batches: while one write waits, the batches detected meanwhile queue up and go in the next.
            assert incident_store.writes < len(_batches()) / 2
        await store.close()
    assert results[0] == results[1]
    (incidents_stored, _), processed_states = results[0]
    assert incidents_stored  # the run opened an incident at all
    assert len(processed_states) == len(_batches())
    assert len(set(processed_states)) > 2  # and the hot series' state changed along the way


class HotBehind:
    """A stream clock by which the hot series' input has been read to minute 26 only, whatever the batch."""

    def stream_clock(self, batch: Sequence[MetricSample]) -> Callable[[SeriesKey], float | None]:
        return {HOT: 26 * 60.0}.get


async def test_an_incident_of_a_series_whose_input_is_behind_stays_open_while_the_rest_moves_on() -> None:
    # The hot series' incident (signals at minutes 20-24) would be quiet for 600 s at minute 34 of the other
    # series; by its own input's time (minute 26) it is not.
    async def run(stream_clock: HotBehind | None) -> list[Incident]:
        store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
        clock = FakeClock()
        pipeline = Pipeline(
            source=ListSource(_batches()),
            detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(2), threshold=0.5),
            incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
            remediator=remediator(store.ledger, [], clock=clock),
            store=store,
            observer=RunSummary(),
            stream_clock=stream_clock,
        )
        await pipeline.run()
        incidents = await store.list_incidents()
        await store.close()
        return incidents

    [followed] = await run(None)
    assert followed.state is IncidentState.RESOLVED
    assert followed.resolved_at == 34 * 60.0
    [held] = await run(HotBehind())
    assert held.state is IncidentState.OPEN
