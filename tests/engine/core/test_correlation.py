"""Correlation rules, grouped incidents in the incident manager, and the probable-cause ranking."""

from __future__ import annotations

import dataclasses
import time

import pytest
from pydantic import ValidationError

from engine.core.correlation import CorrelationRules
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.memory import InMemoryStore
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.probable_cause import rank_causes
from engine.core.signal_points import SignalPoints
from engine.domain.batches import SampleBatch
from engine.domain.events import (
    ActionMode,
    Alert,
    AlertStatus,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    MetricSample,
    SeriesKey,
    Severity,
    Signal,
)
from tests.engine.factories import anomaly

RULES = CorrelationRules.model_validate(
    {"group_by": ["namespace", "workload"], "labels": {"workload": ["model", "deployment"]}, "window": "10m"}
)
LATENCY = SeriesKey.of("model_request_latency_p99_seconds", {"model": "fraud", "namespace": "serving"})
ERRORS = SeriesKey.of("model_request_errors_ratio", {"model": "fraud", "namespace": "serving"})
GPU_MEMORY = SeriesKey.of("gpu_memory_used_ratio", {"deployment": "fraud", "namespace": "serving", "gpu": "0"})
OTHER_MODEL = SeriesKey.of("model_request_latency_p99_seconds", {"model": "recommender", "namespace": "serving"})
UNLABELLED = SeriesKey.of("node_load1", {"instance": "n1"})


def test_series_of_one_workload_share_a_group_through_the_label_map() -> None:
    assert RULES.group_of(LATENCY) == RULES.group_of(GPU_MEMORY) == RULES.group_of(ERRORS)
    assert RULES.group_of(LATENCY) == 'group:workload{namespace="serving",workload="fraud"}'
    assert RULES.group_of(OTHER_MODEL) != RULES.group_of(LATENCY)
    # A series without the group's labels is a group of its own, as without rules.
    assert RULES.group_of(UNLABELLED) is None
    assert CorrelationRules().group_of(LATENCY) is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"group_by": ["bad-label"]}, "not label names"),
        ({"group_by": ["workload"], "labels": {"zone": ["az"]}}, "which group_by does not list"),
        ({"relations": {"traffic": ["nonsense"]}}, "unknown kinds"),
        ({"kinds": {"Traffic": ["*rps*"]}}, "a kind is lowercase"),
        ({"group_by": ["namespace"], "windw": "5m"}, "Extra inputs"),
    ],
)
def test_invalid_rules_say_what_is_wrong(document: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CorrelationRules.model_validate(document)


def test_kinds_come_from_metric_names_and_alert_names() -> None:
    assert RULES.kind_of(LATENCY) == "latency"
    assert RULES.kind_of(ERRORS) == "errors"
    assert RULES.kind_of(GPU_MEMORY) == "gpu_memory"
    assert RULES.kind_of(SeriesKey.of("model_requests_total", {})) == "traffic"
    assert RULES.kind_of(SeriesKey.of("ALERTS", {"alertname": "HighErrorRate"})) == "errors"
    custom = CorrelationRules.model_validate({"kinds": {"latency": ["node_load*"]}})
    assert custom.kind_of(UNLABELLED) == "latency"


def test_related_series_open_one_incident_that_each_joins() -> None:
    manager = IncidentManager(IncidentPolicy(min_signals=1, resolve_after_s=900), RULES)
    [opened] = manager.observe(anomaly(100.0, series=GPU_MEMORY))
    [joined] = manager.observe(anomaly(160.0, series=LATENCY))
    [updated] = manager.observe(anomaly(220.0, series=LATENCY, score=0.999))
    assert [c.kind for c in (opened, joined, updated)] == [
        IncidentChangeKind.OPENED,
        IncidentChangeKind.JOINED,
        IncidentChangeKind.UPDATED,
    ]
    incident = updated.incident
    assert incident.id == opened.incident.id
    assert [(s.series, s.first_at, s.last_at, s.count) for s in incident.signals] == [
        (GPU_MEMORY, 100.0, 100.0, 1),
        (LATENCY, 160.0, 220.0, 2),
    ]
    assert (incident.signal_count, incident.peak_score) == (3, 0.999)
    # Another model's latency is another problem.
    [other] = manager.observe(anomaly(230.0, series=OTHER_MODEL))
    assert other.kind is IncidentChangeKind.OPENED
    assert len(manager.active()) == 2


def test_a_grouped_incident_stays_open_while_any_signal_is_anomalous() -> None:
    manager = IncidentManager(IncidentPolicy(min_signals=1, resolve_after_s=300), RULES)
    manager.observe(anomaly(0.0, series=GPU_MEMORY))
    for at in range(60, 1200, 60):
        manager.observe(anomaly(float(at), series=LATENCY))
    # The rules' window (10 minutes, longer than the engine's 5) is the grouped signals' quiet time: memory is
    # quiet, latency is not.
    [quieted] = manager.advance(1200.0)
    assert quieted.kind is IncidentChangeKind.QUIETED
    assert [s.series for s in quieted.incident.signals if not s.active] == [GPU_MEMORY]
    assert manager.advance(1500.0) == []
    [resolved] = manager.advance(1140.0 + 600.0)
    assert resolved.kind is IncidentChangeKind.RESOLVED
    # The engine's resolve-after is a floor: set longer (to keep every incident open), it holds for groups too.
    longer = IncidentManager(IncidentPolicy(min_signals=1, resolve_after_s=1e9), RULES)
    longer.observe(anomaly(0.0, series=GPU_MEMORY))
    assert longer.advance(1e6) == []
    assert resolved.incident.state is IncidentState.RESOLVED
    assert manager.active() == []


def test_an_alert_joins_its_group_and_keeps_the_incident_open_until_it_resolves() -> None:
    manager = IncidentManager(IncidentPolicy(min_signals=1, resolve_after_s=900), RULES)
    [opened] = manager.observe(anomaly(0.0, series=ERRORS))
    firing = Alert(
        name="FraudErrorBudgetBurn",
        fingerprint="abc",
        status=AlertStatus.FIRING,
        labels=(("model", "fraud"), ("namespace", "serving")),
        starts_at=30.0,
        severity=Severity.CRITICAL,
    )
    [joined] = manager.observe_alert(firing)
    assert (joined.kind, joined.incident.id, joined.incident.severity) == (
        IncidentChangeKind.JOINED,
        opened.incident.id,
        Severity.CRITICAL,
    )
    assert manager.observe_alert(firing) == []
    # The anomaly signal goes quiet; the alert still fires.
    [quieted] = manager.advance(2000.0)
    assert quieted.kind is IncidentChangeKind.QUIETED
    resolved_alert = dataclasses.replace(firing, status=AlertStatus.RESOLVED, ends_at=2100.0)
    [resolved] = manager.observe_alert(resolved_alert)
    assert (resolved.kind, resolved.incident.resolved_at) == (IncidentChangeKind.RESOLVED, 2100.0)


def test_a_group_restored_series_by_series_is_one_incident() -> None:
    first = IncidentManager(IncidentPolicy(min_signals=1), RULES)
    first.observe(anomaly(0.0, series=GPU_MEMORY))
    first.observe(anomaly(60.0, series=LATENCY))
    states = {series: first.series_state(series) for series in (GPU_MEMORY, LATENCY)}
    successor = IncidentManager(IncidentPolicy(min_signals=1), RULES)
    for series, (incident, pending) in states.items():
        successor.restore_series(series, incident, pending)
    [incident] = successor.active()
    assert {s.series for s in incident.signals} == {GPU_MEMORY, LATENCY}
    assert incident.series == GPU_MEMORY
    successor.forget_series(GPU_MEMORY)
    [incident] = successor.active()
    assert [s.series for s in incident.signals] == [LATENCY]


async def test_two_processes_reading_one_group_share_its_incident_through_the_store() -> None:
    store = InMemoryStore()
    policy = IncidentPolicy(min_signals=1, resolve_after_s=900)
    memory_reader, latency_reader = IncidentManager(policy, RULES), IncidentManager(policy, RULES)
    first = await store.apply_changes(memory_reader.observe(anomaly(0.0, series=GPU_MEMORY)))
    memory_reader.adopt(first)
    second = await store.apply_changes(latency_reader.observe(anomaly(60.0, series=LATENCY)))
    latency_reader.adopt(second)
    assert [c.kind for c in second] == [IncidentChangeKind.JOINED]
    # The latency reader now feeds the memory reader's incident.
    [update] = await store.apply_changes(latency_reader.observe(anomaly(120.0, series=LATENCY)))
    assert update.incident.id == first[0].incident.id
    # Memory goes quiet: the store keeps the incident open for the latency signal.
    [quiet] = await store.apply_changes(memory_reader.advance(1000.0))
    assert quiet.kind is IncidentChangeKind.QUIETED
    [resolved] = await store.apply_changes(latency_reader.advance(1200.0))
    assert (resolved.kind, resolved.incident.id) == (IncidentChangeKind.RESOLVED, first[0].incident.id)
    assert len({c.incident.id for c in store.changes}) == 1


def _signal(series: SeriesKey, first_at: float, score: float = 0.99) -> Signal:
    return Signal(series, first_at, first_at + 600, first_at, 1.0, score, 5, Severity.WARNING)


def test_a_known_cause_ranks_first_even_when_detected_after_its_effect() -> None:
    # A slow memory leak is detected after the latency it causes; utilisation follows.
    util = SeriesKey.of("gpu_utilisation_ratio", {"deployment": "fraud"})
    causes = rank_causes([_signal(LATENCY, 100.0), _signal(GPU_MEMORY, 220.0), _signal(util, 400.0)], RULES)
    assert [c.signal.series for c in causes] == [GPU_MEMORY, LATENCY, util]
    assert causes[0].explains == (str(LATENCY), str(util))
    assert any("known cause of latency" in reason for reason in causes[0].reasons)
    assert causes[1].explained_by == str(GPU_MEMORY)


def test_traffic_ranks_before_the_latency_and_errors_it_moves() -> None:
    traffic = SeriesKey.of("model_requests_per_second", {"model": "fraud"})
    causes = rank_causes([_signal(ERRORS, 300.0), _signal(LATENCY, 160.0), _signal(traffic, 100.0)], RULES)
    assert [c.signal.series for c in causes] == [traffic, LATENCY, ERRORS]


def test_without_known_relations_the_first_to_begin_ranks_first_then_the_strongest() -> None:
    a, b, c = (SeriesKey.of(name, {}) for name in ("thing_a", "thing_b", "thing_c"))
    causes = rank_causes([_signal(a, 200.0), _signal(b, 100.0, 0.9), _signal(c, 100.0, 0.999)], RULES)
    assert [cause.signal.series for cause in causes] == [c, b, a]
    assert [cause.rank for cause in causes] == [1, 2, 3]
    assert causes[0].reasons[0].startswith("began first")
    [only] = rank_causes([_signal(a, 0.0)], RULES)
    assert only.reasons == ("the incident's only signal",)


def test_signal_points_follow_a_signal_from_before_its_onset_to_its_incident_s_end() -> None:
    manager = IncidentManager(IncidentPolicy(min_signals=1, resolve_after_s=300), RULES)
    batch = [MetricSample(series, float(t), 1.0) for series in (LATENCY, OTHER_MODEL) for t in range(0, 6000, 60)]
    changes = manager.observe(anomaly(3000.0, series=LATENCY))
    resolved = manager.advance(3600.0)
    kept_of = []
    for given in (batch, SampleBatch.of_samples(batch)):  # samples one by one, or Kafka's columns in runs
        points = SignalPoints(max_points=50)
        points.follow(changes)
        points.stop([*changes, *resolved])
        kept_of.append(points.points(given))
        points.drop_stopped()
    kept = kept_of[0]
    assert kept_of[1] == kept
    # Half an hour of context before the onset, up to the resolution, only the signal's series.
    assert {p[1] for p in kept} == {str(LATENCY)}
    assert (kept[0][2], kept[-1][2]) == (3000.0 - 1800.0, 3600.0)
    assert {p[0] for p in kept} == {changes[0].incident.id}
    assert points.points(batch) == []


def _grouped_incident_of(*signals: Signal) -> IncidentChange:
    manager = IncidentManager(IncidentPolicy(min_signals=1), RULES)
    changes: list[IncidentChange] = []
    for signal in sorted(signals, key=lambda s: s.first_at):
        changes += manager.observe(anomaly(signal.first_at, series=signal.series))
    return changes[-1]


NOTIFY = {
    "name": "notify",
    "triggers": [{"series": ERRORS.name}],
    "steps": [
        {
            "action": "webhook_notify",
            "params": {
                "url": "https://hooks.example.com/x",
                "message": "{{ incident.labels.model }}: cause {{ incident.cause.name }} ({{ incident.cause.kind }}),"
                " {{ incident.signals | length }} signals",
            },
        }
    ],
}


def test_a_trigger_matches_any_signal_of_an_incident_and_templates_see_signals_and_cause() -> None:
    traffic = SeriesKey.of("model_requests_per_second", {"model": "fraud", "namespace": "serving"})
    # Traffic began first; the errors joined the incident it opened.
    change = _grouped_incident_of(_signal(traffic, 100.0), _signal(ERRORS, 160.0))
    assert change.kind is IncidentChangeKind.JOINED
    [planned] = Planner([Playbook.model_validate(NOTIFY)], ActionMode.DRY_RUN, RULES).plan(change)
    assert planned.request.params["message"] == "fraud: cause model_requests_per_second (traffic), 2 signals"
    assert planned.request.explanation["matched_series"] == str(ERRORS)


def test_a_trigger_on_the_cause_fires_only_when_its_series_is_ranked_first() -> None:
    on_cause = NOTIFY | {"triggers": [{"series": ERRORS.name, "signal": "cause"}]}
    traffic = SeriesKey.of("model_requests_per_second", {"model": "fraud", "namespace": "serving"})
    planner = Planner([Playbook.model_validate(on_cause)], ActionMode.DRY_RUN, RULES)
    # Errors that follow a traffic surge are an effect: nothing to roll back.
    assert planner.plan(_grouped_incident_of(_signal(traffic, 100.0), _signal(ERRORS, 160.0))) == []
    # Errors that came first, with latency after them, are the cause.
    [planned] = planner.plan(_grouped_incident_of(_signal(ERRORS, 1000.0), _signal(LATENCY, 1060.0)))
    assert planned.request.params["message"].startswith("fraud: cause model_request_errors_ratio (errors)")


def test_a_kind_glob_written_to_backtrack_matches_in_bounded_time() -> None:
    # Kinds come from a file anyone with write access to the playbooks edits: a glob of many stars against a long
    # metric name must not take the incident stage's time.
    rules = CorrelationRules.model_validate({"kinds": {"slow": ["*a" * 60 + "b"]}})
    started = time.perf_counter()
    assert rules.kind_of(SeriesKey.of("a" * 1000)) is None
    assert time.perf_counter() - started < 0.5
