"""The engine's own Prometheus metrics, kept in a registry that the composition root creates and passes in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from engine.domain.batches import latest_timestamp
from engine.domain.events import (
    ActionResult,
    Anomaly,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    MetricSample,
)

# One batch: well under a millisecond for a few samples, tens of milliseconds for 100,000 with the vectorised
# default detector; the top buckets are for slow families (isolation forest refits).
DETECTION_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_SIZE_BUCKETS = (1, 10, 100, 1_000, 10_000, 100_000)


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
            "aiops_remote_write_rejected_total",
            "remote_write bodies refused whole: undecodable or larger than their bound",
            registry=registry,
        )
        self.otlp_samples = Counter(
            "aiops_otlp_samples_total",
            "Samples taken from OTLP/HTTP metric requests (after flattening)",
            registry=registry,
        )
        self.otlp_rejected = Counter(
            "aiops_otlp_rejected_total",
            "OTLP/HTTP metric requests refused whole: undecodable, larger than their bound, or of another media type",
            registry=registry,
        )
        self.series_refused = Counter(
            "aiops_series_refused_total",
            "Series whose samples were refused, by reason (series_limit: past AIOPS_MAX_SERIES, counted once per "
            "request or batch carrying them; invalid_labels: remote_write series breaking the label rules)",
            ["reason"],
            registry=registry,
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
        # With aiops_anomalies_total and aiops_incident_changes_total{kind="opened"}: how much correlation cuts the
        # noise (signals per incident; without correlation, every signal would be an incident of its own).
        self.signals = Counter(
            "aiops_incident_signals_total",
            "Signals: a series whose anomalies opened an incident or joined one (again, after going quiet)",
            registry=registry,
        )
        # Counted in the store (refresh_incidents), not from the pipeline's changes: acknowledgements go through the
        # API, and replicas sharing a database each see every incident. Every replica reports the same figures.
        self.incidents = Gauge(
            "aiops_incidents",
            "Incidents in the store by state (open, acknowledged, resolved), as last counted",
            ["state"],
            registry=registry,
        )
        for state in IncidentState:
            self.incidents.labels(state.value)  # exported as 0 from the start, so a panel shows no gap
        self.detection_seconds = Histogram(
            "aiops_detection_seconds",
            "Wall-clock time detection took to score one batch of samples",
            buckets=DETECTION_BUCKETS_S,
            registry=registry,
        )
        self.batch_samples = Histogram(
            "aiops_detection_batch_samples",
            "Samples in one batch scored by detection",
            buckets=BATCH_SIZE_BUCKETS,
            registry=registry,
        )
        self.actions = Counter(
            "aiops_actions_total",
            "Action requests by action, mode and outcome",
            ["action", "mode", "status"],
            registry=registry,
        )
        self.ingest = IngestMetrics(registry)
        # Exported as 0 from the start: an alert on its rate needs the series to exist.
        self.ingest.series_refused.labels("series_limit")
        self.last_event_time = Gauge(
            "aiops_last_event_timestamp_seconds",
            "Event time of the newest processed sample",
            registry=registry,
        )

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self.samples.inc(len(samples))
        if samples:
            self.last_event_time.set(latest_timestamp(samples))

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        self.detection_seconds.observe(seconds)
        self.batch_samples.observe(len(samples))

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        for anomaly in anomalies:
            self.anomalies.labels(anomaly.detector, anomaly.severity.label).inc()

    def on_incident_change(self, change: IncidentChange) -> None:
        self.incident_changes.labels(change.kind.value).inc()
        if change.kind in (IncidentChangeKind.OPENED, IncidentChangeKind.JOINED):
            self.signals.inc()
        if change.kind is IncidentChangeKind.OPENED:
            self.open_incidents.inc()
        elif change.kind is IncidentChangeKind.RESOLVED:
            self.open_incidents.dec()

    def refresh_incidents(self, counts: Mapping[IncidentState, int]) -> None:
        """Set the incidents-by-state gauge from a count of the store (states missing from ``counts``: 0)."""
        for state in IncidentState:
            self.incidents.labels(state.value).set(counts.get(state, 0))

    def on_series_refused(self, reason: str, count: int) -> None:
        """Detection refused ``count`` new series (a refusal listener of ``DetectionService``)."""
        self.ingest.series_refused.labels(reason).inc(count)

    def on_action(self, result: ActionResult) -> None:
        self.actions.labels(result.request.action, result.request.mode.value, result.status.value).inc()
