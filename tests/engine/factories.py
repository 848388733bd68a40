"""Small builders of domain values for tests."""

from __future__ import annotations

from engine.domain.events import Anomaly, Incident, IncidentState, SeriesKey, Severity

LATENCY = SeriesKey.of("model_request_latency_p99_seconds", {"model": "fraud-detector", "namespace": "serving"})


def anomaly(
    at: float, *, series: SeriesKey = LATENCY, score: float = 0.99, severity: Severity = Severity.WARNING
) -> Anomaly:
    return Anomaly(series, at, 1.0, score, "test", severity)


def incident(
    *,
    series: SeriesKey = LATENCY,
    severity: Severity = Severity.WARNING,
    id: str = "inc-1",
    opened_at: float = 100.0,
) -> Incident:
    return Incident(
        id=id,
        # One per incident: a store merges an opening into the active incident of the same fingerprint.
        fingerprint=f"anomaly:{series}" if id == "inc-1" else f"anomaly:{series}#{id}",
        title="t",
        series=series,
        severity=severity,
        state=IncidentState.OPEN,
        opened_at=opened_at,
        last_signal_at=opened_at,
        signal_count=2,
        peak_score=0.99,
    )
