"""The one pipeline: sources -> detection -> incidents -> playbooks -> actions -> sinks.

Each arrow is a bounded channel and each stage a task of one TaskGroup: a slow stage makes the stages before it
wait (back-pressure), a crash in any stage cancels the others, and cancelling the pipeline stops every stage.
Alerts pushed by an alerting system (an optional ``AlertFeed``) join at the incident stage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

from engine.core.alert_feed import AlertFeed
from engine.core.channels import Channel
from engine.core.detection import DetectionService
from engine.core.incidents import IncidentManager
from engine.core.playbooks.planner import PlanningError
from engine.core.playbooks.remediation import Remediator
from engine.core.ports import BatchAcknowledger, IncidentStore, PipelineObserver, SampleSource
from engine.core.silences import SilenceBook
from engine.domain.batches import latest_timestamp
from engine.domain.events import Alert, Anomaly, IncidentChange, MetricSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Tick:
    """Event time has reached ``watermark``: time-driven decisions (verifications) may now be due."""

    watermark: float


@dataclass(frozen=True)
class _Detected:
    anomalies: Sequence[Anomaly]
    # The latest event time seen so far; drives time-based incident changes.
    watermark: float
    batch: Sequence[MetricSample] = ()


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

    async def run(self) -> None:
        """Run until the source is exhausted and every stage has drained."""
        samples: Channel[Sequence[MetricSample]] = Channel(self._capacity)
        detected: Channel[_Detected | _Alerted] = Channel(self._capacity)
        changes: Channel[IncidentChange | _Tick] = Channel(self._capacity * 64)
        async with asyncio.TaskGroup() as group:
            alerts = None
            if self._alerts is not None:
                alerts = group.create_task(self._forward_alerts(self._alerts, detected), name="alerts")
            group.create_task(self._read(samples), name="source")
            group.create_task(self._detect(samples, detected, alerts), name="detection")
            group.create_task(self._track(detected, changes), name="incidents")
            group.create_task(self._remediate(changes), name="remediation")

    async def _read(self, out: Channel[Sequence[MetricSample]]) -> None:
        try:
            async for batch in self._source.batches():
                await out.send(batch)
        finally:
            await out.close()

    async def _forward_alerts(self, feed: AlertFeed, out: Channel[_Detected | _Alerted]) -> None:
        async for alerts in feed:
            await out.send(_Alerted(alerts))

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
        finally:
            # The source is done: stop taking alerts too, so that the incident stage can drain and finish.
            if alerts is not None and self._alerts is not None:
                self._alerts.close()
                alerts.cancel()
            await out.close()

    async def _track(self, inbox: Channel[_Detected | _Alerted], out: Channel[IncidentChange | _Tick]) -> None:
        try:
            # Everything waiting is taken at once and its changes stored in one transaction: when the store is
            # slower than detection (a burst of new incidents), the backlog costs one commit, not one per batch.
            async for burst in inbox.bursts():
                outcomes = []
                for item in burst:
                    outcomes.append((item, self._changes_of(item)))
                    if isinstance(item, _Detected) and self._acknowledger is not None:
                        # Before the burst's next batch is taken: the stage's state is exactly as of this one's end.
                        self._acknowledger.processed(item.batch)
                # Stored before anything is handed on or acknowledged, so that nothing downstream acts on a
                # change the store does not have, and no offset is committed past an unstored change.
                await self._store.apply_changes([change for _, changes in outcomes for change in changes])
                # Handed on in the order of the batches, each followed by its acknowledgement and its tick.
                for item, changes in outcomes:
                    for change in changes:
                        self._observer.on_incident_change(change)
                        await out.send(change)
                    if isinstance(item, _Detected):
                        if self._acknowledger is not None:
                            await self._acknowledger.acknowledge(item.batch)
                        await out.send(_Tick(item.watermark))
        finally:
            await out.close()

    def _changes_of(self, item: _Detected | _Alerted) -> list[IncidentChange]:
        """What one detected batch or one set of alerts changes in the incidents (not stored yet)."""
        if isinstance(item, _Alerted):
            return [change for alert in item.alerts for change in self._incidents.observe_alert(alert)]
        changes: list[IncidentChange] = []
        for anomaly in item.anomalies:
            if self._silences is not None and self._silences.silencing(anomaly.series) is not None:
                continue  # on-call silenced this signal: it opens and updates no incident meanwhile
            changes.extend(self._incidents.observe(anomaly))
        changes.extend(self._incidents.advance(item.watermark))
        return changes

    async def _remediate(self, inbox: Channel[IncidentChange | _Tick]) -> None:
        async for item in inbox:
            if isinstance(item, _Tick):
                results = await self._remediator.settle(item.watermark)
            else:
                try:
                    results = await self._remediator.handle(item)
                except PlanningError:
                    log.exception("could not plan actions for incident %s", item.incident.id)
                    continue
            for result in results:
                self._observer.on_action(result)
