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
    [request] = planner.plan(_opened())
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


def test_only_opened_incidents_call_for_actions() -> None:
    planner = Planner([Playbook.model_validate(SCALE)], ActionMode.DRY_RUN)
    assert planner.plan(IncidentChange(IncidentChangeKind.UPDATED, incident(), 100.0)) == []


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
    ],
)
def test_invalid_playbooks_are_rejected_with_a_reason(change: dict[str, object], fragment: str) -> None:
    with pytest.raises(ValidationError, match=r".*") as info:
        Playbook.model_validate(SCALE | change)
    assert fragment in str(info.value)
