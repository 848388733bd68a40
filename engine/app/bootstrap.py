"""The composition root: builds settings-driven components once and wires them together. Nothing else in the
engine creates stores, registries or clients.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from detectors.registry import UnknownDetectorError
from engine.adapters.actions.pagerduty_changes import PagerDutyChanges
from engine.adapters.api.app import create_app
from engine.adapters.api.auth import TokenBook
from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.api.ingest_limits import IngestLimits
from engine.adapters.playbook_files import load_playbook_set
from engine.adapters.playbook_reloader import PlaybookReloader
from engine.adapters.scenario_files import load_scenario
from engine.adapters.sources.replay import ReplaySource
from engine.adapters.store.resilience import shown_url, skipped_during_outage
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.adapters.web.sessions import PageSessions
from engine.app.action_backends import ActionBackends, open_action_backends, retry_policy
from engine.app.paging import pagerduty_changes, pagerduty_pager
from engine.app.settings import Settings
from engine.app.summary import RunSummary
from engine.core.actions.executor import ActionExecutor
from engine.core.alert_feed import AlertFeed
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.escalation import Escalator
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.paging import IncidentPager
from engine.core.pipeline import Pipeline
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import Verifier
from engine.core.ports import BatchAcknowledger, FanOutObserver, PipelineObserver, SampleSource, StreamClock
from engine.core.silences import SilenceBook, SilenceDesk
from engine.domain.clock import Clock, SystemClock
from engine.domain.errors import ConfigurationError
from engine.domain.events import ActionResult, Incident, IncidentState
from engine.domain.limits import LabelLimits
from engine.domain.scenario import Scenario

log = logging.getLogger(__name__)
# How often every engine recounts incidents by state in the store: one grouped count on an indexed column.
INCIDENT_COUNT_INTERVAL_S = 5.0


@dataclass
class EngineBase:
    """What every running engine shape holds and does the same way, whatever feeds its pipeline."""

    settings: Settings
    store: SqlStore
    metrics: EngineMetrics
    summary: RunSummary
    pipeline: Pipeline
    playbooks: PlaybookReloader
    executor: ActionExecutor
    remediator: Remediator
    desk: IncidentDesk
    backends: ActionBackends
    escalator: Escalator
    silences: SilenceDesk
    # PagerDuty change events for the engine's actions, when a routing key is configured.
    changes: PagerDutyChanges | None

    def status(self) -> dict[str, Any]:
        return {"mode": self.settings.mode.value, **self.summary.counts()}

    def api(self, tokens: TokenBook) -> FastAPI:
        return create_app(
            store=self.store,
            metrics=self.metrics,
            status=self.status,
            tokens=tokens,
            playbooks=self.playbooks,
            executor=self.remediator,
            desk=self.desk,
            silences=self.silences,
            ingest_limits=ingest_limits(self.settings),
            page_sessions=self._page_sessions(),
            **self._api_extras(),
        )

    def _page_sessions(self) -> PageSessions:
        # Wall-clock time, whatever clock the engine runs on: a replay's clock runs far faster than a login lasts.
        lifetime, key = self.settings.ui_session_s, self.settings.ui_session_secret
        if key:
            return PageSessions(key=key, lifetime_s=lifetime, clock=SystemClock())
        return PageSessions.with_random_key(lifetime_s=lifetime, clock=SystemClock())

    def _api_extras(self) -> dict[str, Any]:
        """Endpoints only this engine shape offers (as create_app keyword arguments)."""
        return {}

    def _unjudged_grace_s(self) -> float | None:
        """How long past its deadline a verification no replica judged waits before a person is handed it; None
        where this process sees every series (it judges them all itself, on event time that may be a replay's)."""
        return None

    async def recover(self) -> None:
        """Reconcile the steps a previous run left unfinished (crash, kill) before new work starts."""
        self._report(await self.remediator.recover())
        await refresh_incident_counts(self.store, self.metrics)

    async def housekeeping(
        self, clock: Clock, interval_s: float = 30.0, count_interval_s: float = INCIDENT_COUNT_INTERVAL_S
    ) -> None:
        """Forever (until cancelled): expire steps nobody approved in time, re-open incidents whose
        acknowledgement timed out, send the escalation notifications that are due, and recount incidents by
        state every ``count_interval_s`` (what the pipeline opened and resolved, and what another replica or an
        acknowledgement timeout changed); and follow the playbook directory (``AIOPS_PLAYBOOK_RELOAD_S``)."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._chores(clock, interval_s), name="chores")
            group.create_task(self._recount_incidents(clock, count_interval_s), name="incident-counts")
            if self.settings.playbook_reload_s > 0:
                # Every engine shape follows the playbook directory (`run`, `serve` and `watch` alike).
                group.create_task(self.playbooks.watch(self.settings.playbook_reload_s), name="playbooks")
            if self.changes is not None:
                group.create_task(self.changes.run(), name="pagerduty-changes")

    async def _chores(self, clock: Clock, interval_s: float) -> None:
        while True:
            await clock.sleep(interval_s)
            # Each chore is done again on the next round: a database away for now skips a round, not the engine.
            with skipped_during_outage("housekeeping"):
                self._report(await self.executor.expire_overdue())
                grace = self._unjudged_grace_s()
                if grace is not None:
                    self._report(await self.remediator.hand_over_unjudged(clock.now(), grace))
                self._report(await self.escalator.tick())
                await self.silences.refresh()

    async def _recount_incidents(self, clock: Clock, interval_s: float) -> None:
        while True:
            await clock.sleep(interval_s)
            await refresh_incident_counts(self.store, self.metrics)

    def _report(self, results: Sequence[ActionResult]) -> None:
        """Results decided outside the pipeline still count in the metrics and the run's summary."""
        for result in results:
            self.metrics.on_action(result)
            self.summary.on_action(result)
            if self.changes is not None:
                self.changes.on_action(result)

    async def close(self) -> None:
        await self.backends.aclose()
        await self.store.close()


@dataclass
class EmbeddedEngine(EngineBase):
    """Everything one embedded run needs, wired: the engine fed by a replayed scenario."""

    scenario: Scenario
    source: ReplaySource
    alerts: AlertFeed | None = None
    ingest: IngestCredentials | None = None

    def _api_extras(self) -> dict[str, Any]:
        return {"ingest": self.ingest, "alerts": self.alerts}

    def status(self) -> dict[str, Any]:
        return {"scenario": self.scenario.name, "total_samples": self.source.total_samples, **super().status()}


async def refresh_incident_counts(store: SqlStore, metrics: EngineMetrics) -> None:
    """Set ``aiops_incidents{state}`` from a count of the store. A failed count leaves the last figures and is
    logged: metrics must not stop the loop or fail the decision that asked for the recount."""
    try:
        counts = await store.count_incidents_by_state()
    except (SQLAlchemyError, OSError) as exc:
        log.warning("could not count incidents by state: %s", exc)
        return
    metrics.refresh_incidents(counts)


class RecountingDecisions:
    """The store's incident decisions, with ``aiops_incidents{state}`` recounted shortly after them: acknowledgements
    and resolutions by people go through the API, never through the pipeline that the metrics observe. One count
    follows a burst of decisions (it reads the whole table), and the decision's reply does not wait for it."""

    def __init__(self, store: SqlStore, metrics: EngineMetrics, delay_s: float = 0.5) -> None:
        self._store = store
        self._metrics = metrics
        self._delay_s = delay_s
        self._recount: asyncio.Task[None] | None = None

    def _recount_soon(self) -> None:
        if self._recount is None or self._recount.done():
            self._recount = asyncio.get_running_loop().create_task(self._recount_after_delay(), name="recount")

    async def recounted(self) -> None:
        """Wait for the count that the decisions so far asked for."""
        if self._recount is not None:
            await asyncio.shield(self._recount)

    async def _recount_after_delay(self) -> None:
        await asyncio.sleep(self._delay_s)
        await refresh_incident_counts(self._store, self._metrics)

    async def decide_incident(
        self,
        incident_id: str,
        *,
        allowed_from: frozenset[IncidentState],
        to: IncidentState,
        kind: str,
        by: str,
        comment: str,
        at: float,
        planned: Sequence[PlannedStep] = (),
    ) -> Incident:
        incident = await self._store.decide_incident(
            incident_id, allowed_from=allowed_from, to=to, kind=kind, by=by, comment=comment, at=at, planned=planned
        )
        self._recount_soon()
        return incident

    async def annotate_incident(
        self, incident_id: str, *, kind: str, by: str, comment: str, at: float, snoozed_until: float | None = None
    ) -> Incident:
        return await self._store.annotate_incident(
            incident_id, kind=kind, by=by, comment=comment, at=at, snoozed_until=snoozed_until
        )

    async def resolved_among(self, incident_ids: Collection[str]) -> set[str]:
        return await self._store.resolved_among(incident_ids)


def _prepare_database_dir(url: str) -> None:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"invalid AIOPS_DATABASE_URL {shown_url(url)!r}: {exc}") from exc
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        try:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot create the directory for {parsed.database}: {exc}") from exc


def label_limits(settings: Settings) -> LabelLimits:
    return LabelLimits(
        max_labels=settings.max_labels_per_series,
        max_name_length=settings.max_label_name_length,
        max_value_length=settings.max_label_value_length,
    )


def ingest_limits(settings: Settings) -> IngestLimits:
    return IngestLimits(
        alert_max_body_bytes=settings.alert_max_body_bytes,
        remote_write_max_body_bytes=settings.remote_write_max_body_bytes,
        remote_write_max_decoded_bytes=settings.remote_write_max_decoded_bytes,
        otlp_max_decoded_bytes=settings.otlp_max_decoded_bytes,
        remote_write_max_samples=settings.remote_write_max_samples,
        annotation_max_length=settings.max_annotation_length,
        labels=label_limits(settings),
    )


def detection_service(settings: Settings) -> DetectionService:
    policy = DetectionPolicy(detector=settings.detector, threshold=settings.detector_threshold)
    try:
        return DetectionService.from_registry(policy, max_series=settings.max_series)
    except UnknownDetectorError as exc:
        raise ConfigurationError(f"AIOPS_DETECTOR: {exc}") from exc


@dataclass(frozen=True)
class SharedParts:
    """What every engine shape wires the same way, whatever its source: store, metrics, detection, incidents,
    remediation and the on-call desk."""

    store: SqlStore
    metrics: EngineMetrics
    summary: RunSummary
    detection: DetectionService
    incidents: IncidentManager
    executor: ActionExecutor
    remediator: Remediator
    reloader: PlaybookReloader
    desk: IncidentDesk
    backends: ActionBackends
    escalator: Escalator
    silences: SilenceDesk
    silence_book: SilenceBook
    clock: Clock
    # Remediation workers the pipeline runs (steps carried out at once).
    workers: int
    # PagerDuty's lifecycle events and change events, when a routing key is configured.
    pager: IncidentPager | None = None
    changes: PagerDutyChanges | None = None

    def pipeline(
        self,
        source: SampleSource,
        observers: Sequence[PipelineObserver],
        *,
        alerts: AlertFeed | None = None,
        acknowledger: BatchAcknowledger | None = None,
        stream_clock: StreamClock | None = None,
    ) -> Pipeline:
        """The pipeline from ``source`` through these parts; metrics and the summary always observe it."""
        return Pipeline(
            source=source,
            detection=self.detection,
            incidents=self.incidents,
            remediator=self.remediator,
            store=self.store,
            observer=FanOutObserver(
                self.metrics, self.summary, *([self.changes] if self.changes is not None else []), *observers
            ),
            alerts=alerts,
            acknowledger=acknowledger,
            silences=self.silence_book,
            clock=self.clock,
            workers=self.workers,
            stream_clock=stream_clock,
            pager=self.pager,
        )

    def engine_fields(self, settings: Settings, pipeline: Pipeline) -> dict[str, Any]:
        """The fields every EngineBase shape takes from these parts."""
        return {
            "settings": settings,
            "store": self.store,
            "metrics": self.metrics,
            "summary": self.summary,
            "pipeline": pipeline,
            "playbooks": self.reloader,
            "executor": self.executor,
            "remediator": self.remediator,
            "desk": self.desk,
            "backends": self.backends,
            "escalator": self.escalator,
            "silences": self.silences,
            "changes": self.changes,
        }


async def open_shared_parts(
    settings: Settings, *, clock: Clock, summary: RunSummary | None, sees_every_series: bool = True
) -> SharedParts:
    """Load the playbooks and the detector (failing fast on bad settings or files), open the store, wire the rest.

    ``sees_every_series`` is False where series are spread over replicas (Kafka partitions): a verification of a
    series this replica never sees is then left to the replica that does."""
    playbooks = load_playbook_set(settings.playbook_dir)
    for warning in playbooks.warnings:
        log.warning("playbook warning: %s", warning)
    detection = detection_service(settings)
    _prepare_database_dir(settings.database_url)
    store = await SqlStore.open(settings.database_url, outage_limit_s=settings.store_outage_limit_s)
    metrics = EngineMetrics(CollectorRegistry())
    detection.add_refusal_listener(metrics.on_series_refused)
    backends = open_action_backends(settings, clock, store.ledger)
    pager = pagerduty_pager(settings)
    changes = pagerduty_changes(settings, metrics.registry, clock)
    if changes is not None:
        backends.add({}, changes.aclose)
    executor = ActionExecutor(
        store.ledger,
        clock,
        backends.by_action,
        retry_policy(settings),
        owner=settings.replica_id or f"{socket.gethostname()}:{os.getpid()}",
    )
    remediator = Remediator(
        Planner(playbooks.playbooks, settings.mode, playbooks.correlation),
        executor,
        store.ledger,
        playbooks.policy,
        verifier=Verifier(sees_every_series=sees_every_series),
    )
    incidents = IncidentManager(
        IncidentPolicy(
            min_signals=settings.incident_min_signals,
            open_window_s=settings.incident_open_window_s,
            resolve_after_s=settings.incident_resolve_after_s,
            max_title_length=settings.max_title_length,
        ),
        playbooks.correlation,
    )
    silence_book = SilenceBook(clock, await store.active_silences(at=clock.now()))
    return SharedParts(
        store=store,
        metrics=metrics,
        summary=summary or RunSummary(),
        detection=detection,
        incidents=incidents,
        executor=executor,
        remediator=remediator,
        reloader=PlaybookReloader(
            settings.playbook_dir, remediator, clock, metrics.registry, current=playbooks, incidents=incidents
        ),
        desk=IncidentDesk(RecountingDecisions(store, metrics), incidents, clock, pager),
        backends=backends,
        escalator=Escalator(store, executor, clock, lambda: remediator.policy.escalation, settings.mode),
        silences=SilenceDesk(store, silence_book, clock),
        silence_book=silence_book,
        clock=clock,
        workers=settings.remediation_workers,
        pager=pager,
        changes=changes,
    )


async def open_embedded(
    settings: Settings,
    *,
    clock: Clock,
    speed: float | None,
    summary: RunSummary | None = None,
    observers: Sequence[PipelineObserver] = (),
    scenario: Scenario | None = None,
) -> EmbeddedEngine:
    """Load the scenario (unless given) and playbooks, failing fast on bad files; open the store; wire it up."""
    scenario = scenario or load_scenario(settings.scenario_dir)
    ingest = IngestCredentials.parse(settings.ingest_bearer_sha256, settings.ingest_basic_auth)
    parts = await open_shared_parts(settings, clock=clock, summary=summary)
    source = ReplaySource(scenario, clock, speed=speed)
    alerts = AlertFeed()
    pipeline = parts.pipeline(source, observers, alerts=alerts)
    return EmbeddedEngine(
        **parts.engine_fields(settings, pipeline),
        scenario=scenario,
        source=source,
        alerts=alerts,
        ingest=ingest,
    )
