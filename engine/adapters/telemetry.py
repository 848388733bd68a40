"""The engine's own Prometheus metrics, kept in a registry that the composition root creates and passes in."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.domain.events import (
    ActionResult,
    Anomaly,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    MetricSample,
)


class IngestMetrics:
    """Counters of the ingest endpoints, registered in the engine's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.auth_failures = Counter(
            "aiops_ingest_auth_failures_total",
            "Ingest requests rejected for a missing or wrong credential",
            ["endpoint"],
            registry=registry,
        )
        self.notifications = Counter(
            "aiops_alert_notifications_total",
            "Alertmanager notifications received, by outcome (accepted, duplicate)",
            ["outcome"],
            registry=registry,
        )
        self.remote_write_samples = Counter(
            "aiops_remote_write_samples_total", "Samples received through remote_write", registry=registry
        )
        self.remote_write_rejected = Counter(
            "aiops_remote_write_rejected_total", "remote_write bodies that could not be decoded", registry=registry
        )


class EngineMetrics:
    """Implements the pipeline observer port by counting into Prometheus metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.samples = Counter("aiops_samples_total", "Metric samples processed by detection", registry=registry)
        self.anomalies = Counter(
            "aiops_anomalies_total", "Points scored as anomalous", ["detector", "severity"], registry=registry
        )
        self.incident_changes = Counter(
            "aiops_incident_changes_total", "Incident lifecycle changes", ["kind"], registry=registry
        )
        self.open_incidents = Gauge("aiops_open_incidents", "Incidents currently open", registry=registry)
        # Acknowledgements go through the incident API, not the pipeline, so this gauge cannot tell an acknowledged
        # incident from an open one: "open" counts both, "resolved" counts incidents resolved since the start.
        self.incidents = Gauge(
            "aiops_incidents",
            "Incidents by state: open (including acknowledged) now, and resolved since the engine started",
            ["state"],
            registry=registry,
        )
        for state in (IncidentState.OPEN, IncidentState.RESOLVED):
            self.incidents.labels(state.value)  # exported as 0 from the start, so a panel shows no gap
        # Ids rather than an up/down count: an incident opened before a restart and resolved after it is not
        # subtracted from incidents this process never saw open.
        self._open_ids: set[str] = set()
        self.actions = Counter(
            "aiops_actions_total",
            "Action requests by action, mode and outcome",
            ["action", "mode", "status"],
            registry=registry,
        )
        self.dead_letters = Counter(
            "aiops_dead_letters_total",
            "Rejected input, by source and reason",
            ["source", "reason"],
            registry=registry,
        )
        self.ingest = IngestMetrics(registry)
        self.last_event_time = Gauge(
            "aiops_last_event_timestamp_seconds",
            "Event time of the newest processed sample",
            registry=registry,
        )

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self.samples.inc(len(samples))
        if samples:
            self.last_event_time.set(max(s.timestamp for s in samples))

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        for anomaly in anomalies:
            self.anomalies.labels(anomaly.detector, anomaly.severity.label).inc()

    def on_incident_change(self, change: IncidentChange) -> None:
        self.incident_changes.labels(change.kind.value).inc()
        if change.kind is IncidentChangeKind.OPENED:
            self.open_incidents.inc()
        elif change.kind is IncidentChangeKind.RESOLVED:
            self.open_incidents.dec()
        self._count_by_state(change)

    def _count_by_state(self, change: IncidentChange) -> None:
        if change.kind is IncidentChangeKind.RESOLVED:
            self._open_ids.discard(change.incident.id)
            self.incidents.labels(IncidentState.RESOLVED.value).inc()
        else:
            self._open_ids.add(change.incident.id)
        self.incidents.labels(IncidentState.OPEN.value).set(len(self._open_ids))

    def on_action(self, result: ActionResult) -> None:
        self.actions.labels(result.request.action, result.request.mode.value, result.status.value).inc()
