import pytest
from pydantic import ValidationError

from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner, effective_mode, request_id
from engine.domain.events import ActionMode, IncidentChange, IncidentChangeKind, SeriesKey, Severity
from tests.engine.factories import LATENCY, incident

SCALE = {
    "name": "latency-scale-out",
    "triggers": [{"series": LATENCY.name, "labels": {"namespace": "serving"}}],
    "steps": [
        {
            "action": "scale_deployment",
            "params": {
                "namespace": "{{ incident.labels.namespace }}",
                "deployment": "{{ incident.labels.model }}",
                "step": 2,
            },
        }
    ],
}


def _opened(**kwargs: object) -> IncidentChange:
    return IncidentChange(IncidentChangeKind.OPENED, incident(**kwargs), 100.0)  # type: ignore[arg-type]


def test_planner_renders_templates_into_one_request_per_step() -> None:
    planner = Planner([Playbook.model_validate(SCALE)], ActionMode.DRY_RUN)
    [planned] = planner.plan(_opened())
    request = planned.request
    assert request.action == "scale_deployment"
    assert dict(request.params) == {"namespace": "serving", "deployment": "fraud-detector", "step": 2}
    assert request.mode is ActionMode.DRY_RUN
    assert request.id == request_id("inc-1", "latency-scale-out", 0)


def test_non_matching_series_labels_or_severity_plan_nothing() -> None:
    planner = Planner([Playbook.model_validate(SCALE)], ActionMode.LIVE)
    other = SeriesKey.of(LATENCY.name, {"namespace": "batch", "model": "x"})
    assert planner.plan(_opened(series=other)) == []
    strict = Playbook.model_validate(SCALE | {"triggers": [{"series": LATENCY.name, "min_severity": "critical"}]})
    assert Planner([strict], ActionMode.LIVE).plan(_opened(severity=Severity.WARNING)) == []
    assert len(Planner([strict], ActionMode.LIVE).plan(_opened(severity=Severity.CRITICAL))) == 1


def test_a_playbook_fires_once_per_incident() -> None:
    planner = Planner([Playbook.model_validate(SCALE)], ActionMode.DRY_RUN)
    assert len(planner.plan(_opened())) == 1
    assert planner.plan(IncidentChange(IncidentChangeKind.UPDATED, incident(), 160.0)) == []


def test_for_waits_until_the_incident_has_lasted_long_enough() -> None:
    sustained = SCALE | {"triggers": [{"series": LATENCY.name, "for": "5m"}]}
    planner = Planner([Playbook.model_validate(sustained)], ActionMode.DRY_RUN)
    assert planner.plan(_opened()) == []
    assert planner.plan(IncidentChange(IncidentChangeKind.UPDATED, incident(), 100.0 + 299)) == []
    [planned] = planner.plan(IncidentChange(IncidentChangeKind.UPDATED, incident(), 100.0 + 300))
    assert planned.request.requested_at == 400.0


def test_a_resolved_incident_calls_for_nothing() -> None:
    sustained = SCALE | {"triggers": [{"series": LATENCY.name, "for": 60}]}
    planner = Planner([Playbook.model_validate(sustained)], ActionMode.DRY_RUN)
    assert planner.plan(IncidentChange(IncidentChangeKind.RESOLVED, incident(), 1000.0)) == []


@pytest.mark.parametrize(
    ("matchers", "fires"),
    [
        (['model=~"fraud.*"'], True),
        (['model=~"fraud"'], False),  # anchored, as in PromQL
        (['model!~"rec.*"', 'namespace="serving"'], True),
        (['namespace!="serving"'], False),
        (['team=""'], True),  # a missing label matches the empty string
    ],
)
def test_label_matchers(matchers: list[str], fires: bool) -> None:
    playbook = Playbook.model_validate(SCALE | {"triggers": [{"series": LATENCY.name, "matchers": matchers}]})
    assert bool(Planner([playbook], ActionMode.DRY_RUN).plan(_opened())) is fires


@pytest.mark.parametrize(
    ("condition", "fires"),
    [
        ("incident.peak_score >= 0.99", True),
        ("incident.peak_score > 0.995", False),
        ('incident.labels.model == "fraud-detector" and incident.severity in ["warning", "critical"]', True),
    ],
)
def test_conditions_are_evaluated_over_the_incident(condition: str, fires: bool) -> None:
    playbook = Playbook.model_validate(SCALE | {"conditions": [condition]})
    assert bool(Planner([playbook], ActionMode.DRY_RUN).plan(_opened())) is fires


def test_a_condition_that_fails_at_run_time_yields_a_failed_step_saying_why() -> None:
    playbook = Playbook.model_validate(SCALE | {"conditions": ["incident.labels.team == 'x'"]})
    [failed] = Planner([playbook], ActionMode.DRY_RUN).plan(_opened())
    assert failed.failure is not None
    assert failed.failure.startswith("not planned: ")
    assert "has no attribute 'team'" in failed.failure
    assert failed.request.id == request_id("inc-1", "latency-scale-out", 0)
    assert (failed.request.playbook, failed.request.step, failed.request.action) == (
        "latency-scale-out",
        0,
        "scale_deployment",
    )


@pytest.mark.parametrize(
    "broken",
    [
        {"conditions": ["incident.labels.team == 'x'"]},
        {
            "steps": [
                {
                    "action": "scale_deployment",
                    "params": {"namespace": "serving", "deployment": "{{ incident.labels.team.name }}", "step": 1},
                }
            ]
        },
    ],
    ids=["condition", "template"],
)
def test_a_playbook_that_cannot_be_planned_does_not_stop_the_others(broken: dict[str, object]) -> None:
    failing = Playbook.model_validate(SCALE | broken | {"name": "broken"})
    planner = Planner([failing, Playbook.model_validate(SCALE)], ActionMode.DRY_RUN)
    failed, planned = planner.plan(_opened())
    assert failed.request.playbook == "broken"
    assert failed.failure is not None
    assert failed.failure.startswith("not planned: ")
    assert planned.request.playbook == "latency-scale-out"
    assert planned.failure is None
    assert dict(planned.request.params) == {"namespace": "serving", "deployment": "fraud-detector", "step": 2}
    # Each playbook fires once per incident, the failed one included.
    assert planner.plan(IncidentChange(IncidentChangeKind.UPDATED, incident(), 160.0)) == []


@pytest.mark.parametrize(
    ("global_mode", "playbook_mode", "expected"),
    [
        (ActionMode.LIVE, None, ActionMode.LIVE),
        (ActionMode.LIVE, ActionMode.DRY_RUN, ActionMode.DRY_RUN),
        (ActionMode.DRY_RUN, ActionMode.LIVE, ActionMode.DRY_RUN),
        (ActionMode.SHADOW, ActionMode.LIVE, ActionMode.SHADOW),
        (ActionMode.LIVE, ActionMode.SHADOW, ActionMode.SHADOW),
    ],
)
def test_the_more_cautious_mode_wins(
    global_mode: ActionMode, playbook_mode: ActionMode | None, expected: ActionMode
) -> None:
    assert effective_mode(global_mode, playbook_mode) is expected


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"steps": [{"action": "delete_cluster"}]}, "unknown action 'delete_cluster'"),
        (
            {"steps": [{"action": "rollout_restart", "params": {"namespace": "a", "deploy": "b"}}]},
            "unknown parameter(s) deploy",
        ),
        (
            {"steps": [{"action": "rollout_restart", "params": {"namespace": "{{ incident.", "deployment": "b"}}]},
            "bad template",
        ),
        ({"name": "Bad Name"}, "should match pattern"),
        ({"triggers": []}, "at least 1 item"),
        ({"color": "red"}, "Extra inputs are not permitted"),
        ({"conditions": ["incident.peak_score >"]}, "invalid condition"),
        ({"conditions": ["incident.__class__.__mro__"]}, None),
        ({"triggers": [{"series": "x", "matchers": ["model~fraud"]}]}, "invalid matcher"),
        ({"triggers": [{"series": "x", "matchers": ['model=~"("']}]}, "invalid regular expression"),
        ({"triggers": [{"series": "x", "for": "5 minutes"}]}, "invalid duration"),
    ],
)
def test_invalid_playbooks_are_rejected_with_a_reason(change: dict[str, object], fragment: str | None) -> None:
    if fragment is None:
        # Compiles (the sandbox refuses it only when evaluated), so the planner must report it instead.
        playbook = Playbook.model_validate(SCALE | change)
        [failed] = Planner([playbook], ActionMode.DRY_RUN).plan(_opened())
        assert failed.failure is not None
        assert "unsafe" in failed.failure
        return
    with pytest.raises(ValidationError) as info:
        Playbook.model_validate(SCALE | change)
    assert fragment in str(info.value)
