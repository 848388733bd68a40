"""Alerts from the alert feed travel the pipeline's incident stage: stored, opened and resolved by the alert."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.app.summary import RunSummary
from engine.core import pipeline as pipeline_module
from engine.core.alert_feed import AlertFeed
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.playbooks.model import Playbook
from engine.domain.clock import FakeClock
from engine.domain.events import Alert, AlertStatus, IncidentState, MetricSample, SeriesKey
from tests.engine.core.remediating import remediator
from tests.engine.core.test_pipeline import AboveTen

FIRING = Alert(
    "ModelLatencyHigh",
    "fp-1",
    AlertStatus.FIRING,
    (("alertname", "ModelLatencyHigh"), ("deployment", "fraud")),
    starts_at=100.0,
)
# A playbook triggered by the alert, matched the way Prometheus names alerts: ALERTS{alertname="..."}.
PLAYBOOK = Playbook.model_validate(
    {
        "name": "restart-on-latency-alert",
        "triggers": [{"series": "ALERTS", "labels": {"alertname": "ModelLatencyHigh"}}],
        "steps": [
            {
                "action": "rollout_restart",
                "params": {"namespace": "serving", "deployment": "{{ incident.labels.deployment }}"},
            }
        ],
    }
)


class GatedSource:
    """One quiet batch, then nothing until released: the pipeline stays up while alerts arrive."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        yield [MetricSample(SeriesKey.of("up"), 0.0, 1.0)]
        await self.release.wait()


async def _until(condition: object, store: SqlStore, state: IncidentState) -> None:
    for _ in range(200):
        incidents = await store.list_incidents()
        if incidents and incidents[0].state is state:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no incident reached {state} ({condition})")


def _pipeline(store: SqlStore, summary: RunSummary, feed: AlertFeed, source: GatedSource) -> Pipeline:
    """Alerts from ``feed`` (and quiet samples) through incidents to the alert playbook, in dry-run."""
    return Pipeline(
        source=source,
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=5)),
        remediator=remediator(store.ledger, [PLAYBOOK], clock=FakeClock()),
        store=store,
        observer=summary,
        alerts=feed,
    )


async def test_an_alert_opens_triggers_a_playbook_and_resolves_through_the_pipeline() -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    summary = RunSummary()
    feed, source = AlertFeed(), GatedSource()
    pipeline = _pipeline(store, summary, feed, source)
    running = asyncio.create_task(pipeline.run())
    await feed.submit([FIRING])
    await feed.submit([FIRING])
    await _until("firing", store, IncidentState.OPEN)
    await feed.submit([replace(FIRING, status=AlertStatus.RESOLVED, ends_at=400.0)])
    await _until("resolved", store, IncidentState.RESOLVED)
    source.release.set()
    await asyncio.wait_for(running, timeout=5)

    [incident] = await store.list_incidents()
    assert incident.fingerprint == "alert:fp-1"
    assert incident.resolved_at == 400.0
    detail = await store.get_incident(incident.id)
    assert [entry.kind for entry in detail.timeline] == ["opened", "resolved"]
    assert [action.status for action in summary.actions] == ["dry-run"]
    assert feed.closed
    await store.close()


async def test_a_storm_in_one_notification_is_taken_in_parts_and_every_alert_opens_its_incident_and_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Small parts, so that a storm of a few dozen alerts spans several parts and several bursts.
    monkeypatch.setattr(pipeline_module, "ALERTS_PER_ITEM", 10)
    monkeypatch.setattr(pipeline_module, "BURST_ITEMS", 2)
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    summary = RunSummary()
    feed, source = AlertFeed(), GatedSource()
    pipeline = _pipeline(store, summary, feed, source)
    running = asyncio.create_task(pipeline.run())
    count = 2 * 10 * 2 + 7
    storm = [
        replace(FIRING, fingerprint=f"fp-{n}", labels=(("alertname", "ModelLatencyHigh"), ("deployment", f"d{n}")))
        for n in range(count)
    ]
    # The same alert once more at the end (in another part): its incident's, not a second one.
    await feed.submit([*storm, storm[0]])
    for _ in range(500):
        if len(await store.list_incidents(limit=count + 1)) == count:
            break
        await asyncio.sleep(0.01)
    source.release.set()
    await asyncio.wait_for(running, timeout=30)

    incidents = await store.list_incidents(limit=count + 1)
    assert sorted(incident.fingerprint for incident in incidents) == sorted(f"alert:fp-{n}" for n in range(count))
    assert len(summary.actions) == count
    await store.close()
