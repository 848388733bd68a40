import math
from pathlib import Path

import pytest

from engine.adapters.playbook_files import load_playbook_set
from engine.adapters.yaml_documents import InvalidDocumentError, load_model
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.testing import PlaybookTest, PlaybookTestFile, expand_values, run_test
from engine.domain.events import IncidentChangeKind, SeriesKey, SeriesKeyError, SeriesKeyProblem, Severity

REPO = Path(__file__).resolve().parents[3]
SHIPPED_TESTS = sorted((REPO / "playbooks" / "tests").glob("*.yaml"))


def test_promtool_value_notation() -> None:
    assert expand_values("1+1x3 5 0.5x1") == [1, 2, 3, 4, 5, 0.5, 0.5]
    assert expand_values("3-1x2") == [3, 2, 1]
    [missing, _] = expand_values("_ 1")
    assert math.isnan(missing)


@pytest.mark.parametrize("bad", ["1x", "abc", "1+x3"])
def test_bad_values_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid value"):
        expand_values(bad)


def test_series_selectors() -> None:
    assert SeriesKey.parse('up{job="api", env="prod"}') == SeriesKey.of("up", {"job": "api", "env": "prod"})
    assert SeriesKey.parse("up") == SeriesKey.of("up")
    with pytest.raises(SeriesKeyError) as raised:
        SeriesKey.parse("up{job=api}")
    assert raised.value.problem is SeriesKeyProblem.LABEL


@pytest.mark.parametrize("path", SHIPPED_TESTS, ids=lambda p: p.name)
async def test_shipped_playbooks_pass_their_tests(path: Path) -> None:
    shipped = load_playbook_set(REPO / "playbooks")
    for test in load_model(path, PlaybookTestFile).tests:
        outcome = await run_test(test, shipped.playbooks, shipped.policy, shipped.correlation)
        assert outcome.passed, (test.name, [str(o) for o in outcome.observed])


async def test_a_wrong_expectation_fails() -> None:
    shipped = load_playbook_set(REPO / "playbooks")
    test = PlaybookTest.model_validate(
        {
            "name": "expects a step that a cooldown suppresses",
            "anomaly": "value > 0.85",
            "series": [
                {"series": 'gpu_memory_used_ratio{deployment="x",namespace="serving"}', "values": "0.5x59 0.9x30"}
            ],
            "expect": [{"playbook": "gpu-memory-pressure", "status": "skipped", "guard": "cooldown"}],
        }
    )
    outcome = await run_test(test, shipped.playbooks, shipped.policy)
    assert not outcome.passed
    assert [o.status for o in outcome.observed] == ["dry-run"]


# A playbook on alerts and one on a metric series, both notifying, so tests can tell their steps apart and order.
ALERT_PLAYBOOKS = [
    Playbook.model_validate(
        {
            "name": "on-alert",
            "triggers": [{"series": "ALERTS", "labels": {"namespace": "serving"}, "min_severity": "warning"}],
            "steps": [
                {
                    "action": "webhook_notify",
                    "params": {"url": "https://hooks.example.com/a", "message": "{{ incident.labels.alertname }}"},
                }
            ],
        }
    ),
    Playbook.model_validate(
        {
            "name": "on-latency",
            "triggers": [{"series": "latency"}],
            "steps": [{"action": "webhook_notify", "params": {"url": "https://hooks.example.com/b", "message": "x"}}],
        }
    ),
]
DOWN = {"alertname": "ModelDown", "namespace": "serving", "severity": "critical"}


async def _run(test: dict[str, object]) -> tuple[list[str], list[tuple[str, float]]]:
    outcome = await run_test(PlaybookTest.model_validate({"name": "t", **test}), ALERT_PLAYBOOKS, Policy())
    return (
        [f"{o.playbook} {o.status}" for o in outcome.observed],
        [(c.kind.value, c.at) for c in outcome.incident_changes],
    )


async def test_a_firing_alert_opens_an_incident_on_its_alerts_series_and_runs_the_steps() -> None:
    test = PlaybookTest.model_validate(
        {"name": "t", "alerts": [{"labels": DOWN, "annotations": {"summary": "down"}, "starts_at": "2m"}]}
    )
    outcome = await run_test(test, ALERT_PLAYBOOKS, Policy())
    assert [f"{o.playbook} {o.action} {o.status}" for o in outcome.observed] == ["on-alert webhook_notify dry-run"]
    assert "ModelDown" in outcome.observed[0].detail
    [opened] = outcome.incident_changes
    assert (opened.kind, opened.at, opened.incident.title) == (IncidentChangeKind.OPENED, 120.0, "down")
    assert opened.incident.series == SeriesKey.of("ALERTS", DOWN)
    assert opened.incident.severity is Severity.CRITICAL


async def test_a_resolved_alert_resolves_its_incident_and_runs_nothing_more() -> None:
    steps, changes = await _run({"alerts": [{"labels": DOWN, "starts_at": "1m", "ends_at": "5m", "repeat": "1m"}]})
    assert steps == ["on-alert dry-run"]
    # Repeats at 2m, 3m and 4m change nothing; the resolved notification at 5m resolves.
    assert changes == [("opened", 60.0), ("resolved", 300.0)]


async def test_firing_again_after_a_resolve_is_a_new_incident() -> None:
    steps, changes = await _run(
        {"alerts": [{"labels": DOWN, "starts_at": "0s", "ends_at": "1m"}, {"labels": DOWN, "starts_at": "3m"}]}
    )
    assert steps == ["on-alert dry-run", "on-alert dry-run"]
    assert changes == [("opened", 0.0), ("resolved", 60.0), ("opened", 180.0)]


async def test_the_same_alert_twice_is_one_incident() -> None:
    steps, changes = await _run({"alerts": [{"labels": DOWN, "starts_at": "1m"}, {"labels": DOWN, "starts_at": "1m"}]})
    assert steps == ["on-alert dry-run"]
    assert changes == [("opened", 60.0)]


async def test_low_severity_and_other_namespaces_do_not_trigger() -> None:
    steps, changes = await _run(
        {
            "alerts": [
                {"labels": {**DOWN, "severity": "info"}, "starts_at": "0s"},
                {"labels": {**DOWN, "namespace": "batch"}, "starts_at": "0s"},
            ]
        }
    )
    assert steps == []
    assert len(changes) == 2


@pytest.mark.parametrize(
    ("alert_at", "expected"), [("2m", ["on-alert", "on-latency"]), ("8m", ["on-latency", "on-alert"])]
)
async def test_alerts_and_series_meet_the_incidents_in_event_time_order(alert_at: str, expected: list[str]) -> None:
    steps, _ = await _run(
        {
            "anomaly": "value > 1",
            "series": [{"series": "latency", "values": "0x4 5x5"}],
            "alerts": [{"labels": DOWN, "starts_at": alert_at}],
        }
    )
    assert [step.split()[0] for step in steps] == expected


@pytest.mark.parametrize(
    ("alert", "field", "message"),
    [
        ("{labels: {namespace: serving}, starts_at: 1m}", "tests.0.alerts.0.labels", "needs an alertname"),
        ("{labels: {alertname: A}, starts_at: 5m, ends_at: 2m}", "tests.0.alerts.0", "must be after starts_at"),
        ("{labels: {alertname: A}, starts_at: 5 minutes}", "tests.0.alerts.0.starts_at", "duration"),
        ("{labels: {alertname: A}, firing: 0..5m}", "tests.0.alerts.0", "as starts_at and ends_at"),
        ("{labels: {alertname: A}, starts_at: 0s, until: 5m}", "tests.0.alerts.0.until", "Extra inputs"),
        ("{labels: {alertname: A}, starts_at: 0s, repeat: 0s}", "tests.0.alerts.0.repeat", "positive"),
    ],
)
def test_bad_alerts_are_reported_with_file_line_and_field(tmp_path: Path, alert: str, field: str, message: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(f"tests:\n  - name: t\n    alerts:\n      - {alert}\n", encoding="utf-8")
    with pytest.raises(InvalidDocumentError) as caught:
        load_model(path, PlaybookTestFile)
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (4, field)
    assert message in problem.message


@pytest.mark.parametrize(
    ("test", "message"),
    [
        ({}, "needs input"),
        ({"series": [{"series": "latency", "values": "1"}]}, "need an anomaly"),
    ],
)
def test_a_test_needs_input_and_series_need_a_condition(test: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PlaybookTest.model_validate({"name": "t", **test})
