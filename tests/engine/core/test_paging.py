"""Which PagerDuty events incident changes and decisions call for, what they carry, and what playbooks may say
about PagerDuty: the planning side, without a network (``tests/engine/adapters/test_pagerduty.py`` sends them)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from engine.core.actions.catalogue import PagerDutyEventParams, parse_params
from engine.core.paging import MAX_DETAILS_CHARS, IncidentPager, event_id
from engine.core.playbooks.model import Step
from engine.domain.events import (
    ActionMode,
    Alert,
    AlertStatus,
    Anomaly,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
    Severity,
)
from tests.engine.factories import incident

PAGER = IncidentPager(mode=ActionMode.LIVE)


def change(kind: IncidentChangeKind, **fields: Any) -> IncidentChange:
    return IncidentChange(kind, incident(**fields), 100.0)


@pytest.mark.parametrize(
    ("kind", "events"),
    [
        (IncidentChangeKind.OPENED, ["trigger"]),
        (IncidentChangeKind.UPDATED, []),
        (IncidentChangeKind.RESOLVED, ["resolve"]),
    ],
)
def test_changes_call_for_their_lifecycle_event(kind: IncidentChangeKind, events: list[str]) -> None:
    steps = PAGER.for_change(change(kind))
    assert [step.request.params["event_action"] for step in steps] == events
    for step in steps:
        assert step.request.id == event_id("inc-1", events[0])
        assert step.request.params["dedup_key"] == "inc-1"
        assert step.request.action == "pagerduty_event"
        assert step.target == "pagerduty:inc-1"


@pytest.mark.parametrize(
    ("to", "events"),
    [(IncidentState.ACKNOWLEDGED, ["acknowledge"]), (IncidentState.OPEN, []), (IncidentState.RESOLVED, ["resolve"])],
)
def test_decisions_call_for_their_lifecycle_event(to: IncidentState, events: list[str]) -> None:
    steps = PAGER.for_decision("inc-1", to, 100.0)
    assert [step.request.params["event_action"] for step in steps] == events


def test_a_resolution_by_a_person_and_by_the_pipeline_are_one_step() -> None:
    [by_pipeline] = PAGER.for_change(change(IncidentChangeKind.RESOLVED))
    [by_person] = PAGER.for_decision("inc-1", IncidentState.RESOLVED, 200.0)
    assert by_pipeline.request.id == by_person.request.id


def test_lifecycle_events_are_ordered_steps_of_one_run() -> None:
    [trigger] = PAGER.for_change(change(IncidentChangeKind.OPENED))
    [ack] = PAGER.for_decision("inc-1", IncidentState.ACKNOWLEDGED, 0.0)
    [resolve] = PAGER.for_decision("inc-1", IncidentState.RESOLVED, 0.0)
    assert [(s.request.playbook, s.request.step) for s in (trigger, ack, resolve)] == [
        ("pagerduty", 0),
        ("pagerduty", 1),
        ("pagerduty", 2),
    ]


@pytest.mark.parametrize(
    ("severity", "expected"),
    [(Severity.CRITICAL, "critical"), (Severity.WARNING, "warning"), (Severity.INFO, "info")],
)
def test_severities_map_onto_pagerduty_s(severity: Severity, expected: str) -> None:
    [trigger] = PAGER.for_change(change(IncidentChangeKind.OPENED, severity=severity))
    assert trigger.request.params["payload"]["severity"] == expected


def test_a_series_without_telling_labels_is_its_own_source_and_class() -> None:
    bare = SeriesKey.of("queue_depth", {})
    [trigger] = PAGER.for_change(change(IncidentChangeKind.OPENED, series=bare))
    payload = trigger.request.params["payload"]
    assert (payload["source"], payload["class"]) == ("queue_depth", "queue_depth")
    assert "component" not in payload
    assert "group" not in payload
    assert "links" not in trigger.request.params


def test_an_alert_s_name_is_the_class_and_its_annotations_are_details() -> None:
    series = SeriesKey.of("ALERTS", {"alertname": "ModelLatencyHigh", "namespace": "serving"})
    alert = Alert("ModelLatencyHigh", "fp", AlertStatus.FIRING, series.labels, 0.0, annotations=(("summary", "slow"),))
    opened = IncidentChange(IncidentChangeKind.OPENED, incident(series=series), 0.0, alert=alert)
    [trigger] = PAGER.for_change(opened)
    payload = trigger.request.params["payload"]
    assert payload["class"] == "ModelLatencyHigh"
    assert payload["custom_details"]["annotations"] == {"summary": "slow"}


def test_details_stay_bounded_and_valid_json_whatever_the_incident_holds() -> None:
    huge = SeriesKey.of("m", {f"label_{n}": "x" * 1024 for n in range(64)})
    signal = Anomaly(huge, 0.0, float("inf"), float("nan"), "test", Severity.CRITICAL)
    big = incident(series=huge)
    opened = IncidentChange(IncidentChangeKind.OPENED, big, 0.0, signal=signal)
    [trigger] = PAGER.for_change(opened)
    details = trigger.request.params["payload"]["custom_details"]
    assert len(json.dumps(details, allow_nan=False)) <= MAX_DETAILS_CHARS
    assert details["truncated"] is True
    assert "labels" not in details
    assert details["signal"] == {"value": None, "score": None, "detector": "test"}
    # Every planned event is one the catalogue accepts (the executor parses it again before sending).
    assert isinstance(parse_params("pagerduty_event", trigger.request.params), PagerDutyEventParams)


def test_a_title_longer_than_pagerduty_takes_is_clipped() -> None:
    long = replace(incident(), title="t" * 5000)
    [trigger] = PAGER.for_change(IncidentChange(IncidentChangeKind.OPENED, long, 0.0))
    summary = trigger.request.params["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("…")


def test_links_point_at_the_incident_s_page_with_its_id_escaped() -> None:
    pager = IncidentPager(mode=ActionMode.LIVE, public_url="https://aiops.example.com/")
    [trigger] = pager.for_change(change(IncidentChangeKind.OPENED, id="inc/1 x"))
    assert trigger.request.params["links"] == [
        {"href": "https://aiops.example.com/ui/incidents/inc%2F1%20x", "text": "Incident in aiops-engine"}
    ]


# --- what playbooks may say ---------------------------------------------------------------------------------


def test_playbooks_cannot_name_the_engine_s_own_lifecycle_action() -> None:
    with pytest.raises(ValidationError, match="unknown action 'pagerduty_event'"):
        Step.model_validate({"action": "pagerduty_event", "params": {"event_action": "resolve", "dedup_key": "x"}})


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        pytest.param({"routing_key": "a1b2c3d4" * 4}, "routing_key", id="a-key-instead-of-a-name"),
        pytest.param({"routing_key": "Ops Team"}, "routing_key", id="not-a-name"),
        pytest.param({"severity": "high"}, "severity", id="unknown-severity"),
        pytest.param({"summary": "s" * 1025}, "summary", id="summary-too-long"),
        pytest.param({"dedup_key": "k" * 256}, "dedup_key", id="dedup-key-too-long"),
        pytest.param({"url": "https://events.pagerduty.com"}, "url", id="unknown-field"),
    ],
)
def test_pagerduty_trigger_refuses_what_pagerduty_would_or_a_key_in_a_playbook(
    params: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        Step.model_validate({"action": "pagerduty_trigger", "params": {"summary": "s"} | params})


def test_pagerduty_trigger_takes_templates_and_names() -> None:
    step = Step.model_validate(
        {
            "action": "pagerduty_trigger",
            "params": {"summary": "{{ incident.title }}", "severity": "{{ incident.severity }}", "routing_key": "ml"},
        }
    )
    assert step.params["routing_key"] == "ml"
    params = parse_params("pagerduty_trigger", {"summary": "slow", "routing_key": "ml-oncall"})
    assert params.target() == "pagerduty:ml-oncall"
    assert params.describe() == "trigger a PagerDuty alert (error, routing key ml-oncall): slow"


@pytest.mark.parametrize(
    "params",
    [
        {"event_action": "trigger", "dedup_key": "inc-1"},
        {
            "event_action": "resolve",
            "dedup_key": "inc-1",
            "payload": {"summary": "s", "source": "s", "severity": "info"},
        },
        {"event_action": "unacknowledge", "dedup_key": "inc-1"},
    ],
)
def test_a_lifecycle_event_carries_a_payload_exactly_when_it_triggers(params: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        parse_params("pagerduty_event", params)
