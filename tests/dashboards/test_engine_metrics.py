"""The engine metrics that exist for the dashboards: incidents by state, and what the query checks rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from engine.adapters.telemetry import EngineMetrics
from engine.domain.events import IncidentChange, IncidentChangeKind
from tests.dashboards.registries import ModelServerRegistry, exported_series_names
from tests.engine.factories import incident


def _incidents(registry: CollectorRegistry) -> dict[str, float | None]:
    return {state: registry.get_sample_value("aiops_incidents", {"state": state}) for state in ("open", "resolved")}


def _change(kind: IncidentChangeKind, id: str) -> IncidentChange:
    return IncidentChange(kind, incident(id=id), 100.0)


def test_incidents_by_state_start_at_zero() -> None:
    registry = CollectorRegistry()
    EngineMetrics(registry)
    assert _incidents(registry) == {"open": 0.0, "resolved": 0.0}


def test_incidents_by_state_follow_the_lifecycle() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    metrics.on_incident_change(_change(IncidentChangeKind.OPENED, "a"))
    metrics.on_incident_change(_change(IncidentChangeKind.OPENED, "b"))
    metrics.on_incident_change(_change(IncidentChangeKind.UPDATED, "a"))
    assert _incidents(registry) == {"open": 2.0, "resolved": 0.0}
    metrics.on_incident_change(_change(IncidentChangeKind.RESOLVED, "a"))
    assert _incidents(registry) == {"open": 1.0, "resolved": 1.0}
    # The older gauge keeps its behaviour.
    assert registry.get_sample_value("aiops_open_incidents") == 1.0


def test_an_incident_opened_before_a_restart_counts_once_and_never_below_zero() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    metrics.on_incident_change(_change(IncidentChangeKind.UPDATED, "old"))
    metrics.on_incident_change(_change(IncidentChangeKind.UPDATED, "old"))
    assert _incidents(registry) == {"open": 1.0, "resolved": 0.0}
    metrics.on_incident_change(_change(IncidentChangeKind.RESOLVED, "old"))
    metrics.on_incident_change(_change(IncidentChangeKind.RESOLVED, "older"))
    assert _incidents(registry) == {"open": 0.0, "resolved": 2.0}


def test_a_histogram_with_negative_buckets_has_no_sum_for_a_panel_to_query() -> None:
    # prometheus_client drops _sum when a bucket is negative; a "mean value" panel would stay empty forever.
    serving = ModelServerRegistry()
    serving.feed()
    exported = exported_series_names(serving.registry)
    assert "model_server_input_feature_value_count" in exported
    assert "model_server_input_feature_value_sum" not in exported
    assert "model_server_request_duration_seconds_sum" in exported
