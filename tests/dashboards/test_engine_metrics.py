"""The engine metrics that exist for the dashboards: incidents by state, detection time, and what the query checks
rely on."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from engine.adapters.telemetry import EngineMetrics
from engine.domain.events import IncidentChange, IncidentChangeKind, IncidentState
from tests.dashboards.registries import ModelServerRegistry, exported_series_names
from tests.engine.factories import incident


def _incidents(registry: CollectorRegistry) -> dict[str, float | None]:
    return {
        state.value: registry.get_sample_value("aiops_incidents", {"state": state.value}) for state in IncidentState
    }


def test_incidents_by_state_start_at_zero_for_every_state() -> None:
    registry = CollectorRegistry()
    EngineMetrics(registry)
    assert _incidents(registry) == {"open": 0.0, "acknowledged": 0.0, "resolved": 0.0}


def test_incidents_by_state_are_what_the_store_counted_not_what_the_pipeline_saw() -> None:
    registry = CollectorRegistry()
    metrics = EngineMetrics(registry)
    metrics.refresh_incidents({IncidentState.OPEN: 4, IncidentState.ACKNOWLEDGED: 2, IncidentState.RESOLVED: 9})
    # The pipeline's changes move the older gauge and the change counter, not the store's counts.
    metrics.on_incident_change(IncidentChange(IncidentChangeKind.OPENED, incident(id="new"), 100.0))
    assert _incidents(registry) == {"open": 4.0, "acknowledged": 2.0, "resolved": 9.0}
    assert registry.get_sample_value("aiops_open_incidents") == 1.0
    # A state the count did not name has no incident left in it.
    metrics.refresh_incidents({IncidentState.OPEN: 1})
    assert _incidents(registry) == {"open": 1.0, "acknowledged": 0.0, "resolved": 0.0}


def test_the_detection_histograms_are_exported_before_the_first_batch() -> None:
    exported = exported_series_names(EngineMetrics(CollectorRegistry()).registry)
    assert {"aiops_detection_seconds_bucket", "aiops_detection_batch_samples_count"} <= exported


def test_a_histogram_with_negative_buckets_has_no_sum_for_a_panel_to_query() -> None:
    # prometheus_client drops _sum when a bucket is negative; a "mean value" panel would stay empty forever.
    serving = ModelServerRegistry()
    serving.feed()
    exported = exported_series_names(serving.registry)
    assert "model_server_input_feature_value_count" in exported
    assert "model_server_input_feature_value_sum" not in exported
    assert "model_server_request_duration_seconds_sum" in exported
