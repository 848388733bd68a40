"""The one pipeline: sources -> detection -> incidents (+ planned steps) -> the action ledger <- remediation.

Each arrow is a bounded channel and each stage a task of one TaskGroup: a slow stage makes the stages before it
wait (back-pressure), a crash in any stage cancels the others, and cancelling the pipeline stops every stage.
Alerts pushed by an alerting system (an optional ``AlertFeed``) join at the incident stage.

The incident stage stores each batch's incident changes together with the playbook steps they call for, before
the batch is acknowledged (Kafka offsets committed): a crash loses no planned step. Remediation workers carry the
stored steps out off the ingest path, so a slow live action never holds up ingestion; only verifications follow
event time, at the latest watermark (intermediate ones may be skipped when remediation is busy). With ``workers=0``
(playbook tests, backtests) steps are carried out in the incident stage itself, in order, as soon as they are stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.core.alert_feed import AlertFeed
from engine.core.channels import Channel
from engine.core.detection import DetectionService
from engine.core.incidents import IncidentManager
from engine.core.paging import IncidentPager
from engine.core.playbooks.remediation import Remediator
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.workers import RemediationWorkers
from engine.core.ports import BatchAcknowledger, IncidentStore, PipelineObserver, SampleSource, StreamClock
from engine.core.signal_points import SignalPoint, SignalPoints
from engine.core.silences import SilenceBook
from engine.domain.batches import latest_timestamp, parts
from engine.domain.clock import Clock
from engine.domain.events import ActionResult, ActionStatus, Alert, Anomaly, IncidentChange, MetricSample

log = logging.getLogger(__name__)
# How often the incident stage reads which of its live incidents people resolved, and remediation which
# verifications every replica has under way (wall-clock seconds).
DECISION_SYNC_S = 1.0
# The incident stage runs on the event loop that also answers the API, the webhook and the health checks: a storm
# of alerts (thousands in one notification) is taken this many alerts at a time, and at most BURST_ITEMS such sets
# or detected batches are stored in one transaction, with the loop free between them.
ALERTS_PER_ITEM = 100
BURST_ITEMS = 8
# Signal samples for the incident page are stored with this wall-clock period, or sooner when this many wait.
POINTS_EVERY_S = 1.0
POINTS_AT_ONCE = 20_000


class _Watermark:
    """The latest event time the incident stage has stored up to, for the remediation stage: only the newest
    matters, so a busy remediation stage never makes the incident stage wait."""

    def __init__(self) -> None:
        self.value = float("-inf")
        self.finished = False
        self.moved = asyncio.Event()

    def advance(self, watermark: float) -> None:
        self.value = max(self.value, watermark)
        self.moved.set()

    def finish(self) -> None:
        self.finished = True
        self.moved.set()


@dataclass(frozen=True)
class _Detected:
    anomalies: Sequence[Anomaly]
    # The latest event time seen so far; drives time-based incident changes.
    watermark: float
    batch: Sequence[MetricSample] = ()


class _Planning:
    """The steps for a burst's changes as stored, planned inside the store's transaction. The planner fires each
    playbook once per incident, so a transaction tried again (the database was unreachable) must get the steps the
    first try planned for the same change, not nothing: they are kept by change."""

    def __init__(self, plan: Callable[[Sequence[IncidentChange]], list[PlannedStep]]) -> None:
        self._plan = plan
        self._by_change: dict[tuple[str, str, float, float | None], list[PlannedStep]] = {}
        self.steps: list[PlannedStep] = []

    def __call__(self, stored: Sequence[IncidentChange]) -> list[PlannedStep]:
        steps: list[PlannedStep] = []
        for change in stored:
            key = (
                change.incident.id,
                change.kind.value,
                change.at,
                None if change.signal is None else change.signal.timestamp,
            )
            if key not in self._by_change:
                self._by_change[key] = self._plan([change])
            steps += self._by_change[key]
        self.steps = steps
        return steps


@dataclass(frozen=True)
class _Alerted:
    alerts: Sequence[Alert]


class Pipeline:
    def __init__(
        self,
        *,
        source: SampleSource,
        detection: DetectionService,
        incidents: IncidentManager,
        remediator: Remediator,
        store: IncidentStore,
        observer: PipelineObserver,
        channel_capacity: int = 16,
        alerts: AlertFeed | None = None,
        acknowledger: BatchAcknowledger | None = None,
        silences: SilenceBook | None = None,
        clock: Clock | None = None,
        workers: int = 0,
        stream_clock: StreamClock | None = None,
        pager: IncidentPager | None = None,
    ) -> None:
        self._source = source
        self._detection = detection
        self._incidents = incidents
        self._remediator = remediator
        self._store = store
        self._observer = observer
        self._capacity = channel_capacity
        self._alerts = alerts
        self._acknowledger = acknowledger
        self._silences = silences
        self._clock = clock
        self._workers = workers
        self._stream_clock = stream_clock
        self._pager = pager
        self.workers: RemediationWorkers | None = None
        self._signal_points = SignalPoints()
        self._points: list[SignalPoint] = []
        self._points_kept_at = time.monotonic()
        self._decisions_synced_at = float("-inf")

    async def run(self) -> None:
        """Run until the source is exhausted and every stage has drained."""
        samples: Channel[Sequence[MetricSample]] = Channel(self._capacity)
        detected: Channel[_Detected | _Alerted] = Channel(self._capacity)
        watermark = _Watermark()
        async with asyncio.TaskGroup() as group:
            alerts = None
            if self._alerts is not None:
                alerts = group.create_task(self._forward_alerts(self._alerts, detected), name="alerts")
            group.create_task(self._read(samples), name="source")
            group.create_task(self._detect(samples, detected, alerts), name="detection")
            group.create_task(self._track(detected, watermark), name="incidents")
            group.create_task(self._remediate(watermark), name="remediation")

    async def _read(self, out: Channel[Sequence[MetricSample]]) -> None:
        try:
            async for batch in self._source.batches():
                await out.send(batch)
        finally:
            await out.close()

    async def _forward_alerts(self, feed: AlertFeed, out: Channel[_Detected | _Alerted]) -> None:
        async for alerts in feed:
            for part in parts(alerts, ALERTS_PER_ITEM):
                await out.send(_Alerted(part))

    async def _detect(
        self,
        inbox: Channel[Sequence[MetricSample]],
        out: Channel[_Detected | _Alerted],
        alerts: asyncio.Task[None] | None = None,
    ) -> None:
        watermark = float("-inf")
        try:
            async for batch in inbox:
                if not batch:
                    continue
                started = time.perf_counter()
                anomalies = self._detection.process(batch)
                detection_s = time.perf_counter() - started
                self._remediator.observe(batch)
                watermark = max(watermark, latest_timestamp(batch))
                self._observer.on_samples(batch)
                self._observer.on_detection(batch, detection_s)
                self._observer.on_anomalies(anomalies)
                await out.send(_Detected(anomalies, watermark, batch))
                # Queued batches are taken without waiting: let the loop answer others (health checks, requests)
                # between two, so that a large pushed request is never handled in one go.
                await asyncio.sleep(0)
        finally:
            # The source is done: stop taking alerts too, so that the incident stage can drain and finish.
            if alerts is not None and self._alerts is not None:
                self._alerts.close()
                alerts.cancel()
            await out.close()

    async def _track(self, inbox: Channel[_Detected | _Alerted], watermark: _Watermark) -> None:
        try:
            # What is waiting (up to BURST_ITEMS items) is taken at once and its changes stored in one transaction:
            # when the store is slower than detection (a burst of new incidents), the backlog costs one commit per
            # burst, not one per batch.
            async for burst in inbox.bursts(BURST_ITEMS):
                await self._follow_decisions()
                outcomes = []
                for index, item in enumerate(burst):
                    if index:
                        await asyncio.sleep(0)  # see ALERTS_PER_ITEM
                    outcomes.append((item, self._changes_of(item)))
                    if isinstance(item, _Detected) and self._acknowledger is not None:
                        # Before the burst's next batch is taken: the stage's state is exactly as of this one's end.
                        self._acknowledger.processed(item.batch)
                changes = [change for _, item_changes in outcomes for change in item_changes]
                planning = _Planning(self._plan)
                # Stored (with the steps they call for, planned for the changes as the store took them in: an
                # opening may have joined another replica's incident) before anything is acknowledged, so that no
                # offset is committed past an unstored change or step, and nothing acts on what the store does
                # not have.
                stored = await self._store.apply_changes(changes, plan=planning) if changes else []
                self._incidents.adopt(stored)
                # The samples of live signals, for the on-call page's pictures (from the batch of their onset on).
                self._signal_points.follow(stored)
                self._signal_points.stop(stored)
                points = [
                    point
                    for item in burst
                    if isinstance(item, _Detected)
                    for point in self._signal_points.points(item.batch)
                ]
                self._signal_points.drop_stopped()
                await self._keep_points(points)
                self._report(
                    [
                        ActionResult(step.request, ActionStatus.FAILED, step.failure, step.request.requested_at)
                        for step in planning.steps
                        if step.failure is not None
                    ]
                )
                for index, part in enumerate(parts(stored, ALERTS_PER_ITEM)):
                    if index:
                        await asyncio.sleep(0)  # see ALERTS_PER_ITEM
                    for change in part:
                        self._observer.on_incident_change(change)
                for index, (item, item_changes) in enumerate(outcomes):
                    if index:
                        await asyncio.sleep(0)  # see ALERTS_PER_ITEM
                    if isinstance(item, _Detected) and self._acknowledger is not None:
                        await self._acknowledger.acknowledge(item.batch)
                    if self._workers == 0 and (item_changes or isinstance(item, _Detected)):
                        await self._remediate_inline(item.watermark if isinstance(item, _Detected) else None)
                    elif isinstance(item, _Detected):
                        watermark.advance(item.watermark)
                if planning.steps and self.workers is not None:
                    self.workers.wake()
            await self._keep_points([], final=True)
        finally:
            watermark.finish()

    async def _keep_points(self, points: list[SignalPoint], *, final: bool = False) -> None:
        """Store signal samples at most once per POINTS_EVERY_S (or when many wait, or at the end): they are for
        people to look at, and a commit of their own after every burst would add to every anomaly's latency."""
        self._points += points
        now = time.monotonic()
        if self._points and (
            final or len(self._points) >= POINTS_AT_ONCE or now - self._points_kept_at >= POINTS_EVERY_S
        ):
            waiting, self._points = self._points, []
            self._points_kept_at = now
            await self._store.add_signal_points(waiting)

    async def _follow_decisions(self) -> None:
        """At most once per ``DECISION_SYNC_S``: incidents a person resolved (through any replica's API) are
        forgotten here too, so the next signal of their series opens a new incident instead of feeding the old."""
        if self._clock is None:
            return
        now = self._clock.now()
        if now - self._decisions_synced_at < DECISION_SYNC_S:
            return
        self._decisions_synced_at = now
        active = [incident.id for incident in self._incidents.active()]
        if active:
            for incident_id in await self._store.resolved_among(active):
                self._incidents.forget(incident_id)
                self._signal_points.forget(incident_id)

    def _plan(self, changes: Sequence[IncidentChange]) -> list[PlannedStep]:
        steps = [step for change in changes for step in self._remediator.plan(change)]
        if self._pager is not None:
            # PagerDuty's lifecycle events are stored with the changes too: see engine.core.paging.
            steps += [step for change in changes for step in self._pager.for_change(change)]
        return steps

    async def _remediate_inline(self, watermark: float | None) -> None:
        """Carry out every due step now, in order, then the verifications the watermark decides."""
        while results := await self._remediator.run_due(1):
            self._report(results)
        if watermark is not None:
            self._report(await self._remediator.settle(watermark))

    def _report(self, results: Sequence[ActionResult]) -> None:
        for result in results:
            self._observer.on_action(result)

    def _changes_of(self, item: _Detected | _Alerted) -> list[IncidentChange]:
        """What one detected batch or one set of alerts changes in the incidents (not stored yet)."""
        if isinstance(item, _Alerted):
            return [change for alert in item.alerts for change in self._incidents.observe_alert(alert)]
        changes: list[IncidentChange] = []
        for anomaly in item.anomalies:
            if self._silences is not None and self._silences.silencing(anomaly.series) is not None:
                continue  # on-call silenced this signal: it opens and updates no incident meanwhile
            changes.extend(self._incidents.observe(anomaly))
        own_times = None if self._stream_clock is None else self._stream_clock.stream_clock(item.batch)
        changes.extend(self._incidents.advance(item.watermark, own_times))
        return changes

    async def _remediate(self, watermark: _Watermark) -> None:
        """Verifications at the latest watermark, and (with workers) the workers; when the input is done, the
        workers finish every step that is due and stop."""
        if self._workers == 0:
            return
        if self._clock is None:
            raise ValueError("remediation workers need a clock")
        self.workers = RemediationWorkers(self._remediator, self._report, self._clock, concurrency=self._workers)
        done = asyncio.Event()
        async with asyncio.TaskGroup() as group:
            working = group.create_task(self.workers.run(until_idle=done), name="remediation-workers")
            settled = refreshed_at = float("-inf")
            while not watermark.finished or watermark.value > settled:
                await watermark.moved.wait()
                watermark.moved.clear()
                if watermark.value > settled:
                    settled = watermark.value
                    # Every replica's verifications are read from the ledger at most once per DECISION_SYNC_S.
                    refresh = self._clock.now() - refreshed_at >= DECISION_SYNC_S
                    refreshed_at = self._clock.now() if refresh else refreshed_at
                    self._report(await self._remediator.settle(settled, refresh=refresh))
            done.set()
            self.workers.wake()
            await working
            # Steps the workers finished last may have started verifications the data already decides.
            self._report(await self._remediator.settle(settled))
