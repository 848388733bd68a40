"""Playbook tests with hostile or mistaken input fail on their own, with a reason, and never stop the run."""

from pathlib import Path

import pytest

from engine.adapters.yaml_documents import InvalidDocumentError, load_model
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.testing import MAX_POINTS, PlaybookTest, PlaybookTestFile, expand_values, run_test
from engine.domain.events import ActionStatus

EXPLODING = Playbook.model_validate(
    {
        "name": "explodes",
        "triggers": [{"series": "up"}],
        "steps": [
            {
                "action": "rollout_restart",
                "params": {"namespace": "serving", "deployment": "{{ range(10**10)|list }}"},
            }
        ],
    }
)
SPIKE = {"name": "spike", "anomaly": "value > 0.5", "series": [{"series": "up", "values": "0x5 1x5 0x20"}]}


async def test_a_playbook_whose_template_explodes_fails_its_test() -> None:
    test = PlaybookTest.model_validate(SPIKE | {"expect": [{"playbook": "explodes", "status": "dry-run"}]})
    outcome = await run_test(test, [EXPLODING], Policy())
    assert not outcome.passed
    # Depending on where the failure is caught it stops the test or fails the step; never a dry run.
    assert outcome.error is not None or [o.status for o in outcome.observed] == ["failed"]


def test_unknown_statuses_are_refused_at_load_naming_the_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "tests:\n  - name: t\n    anomaly: value > 1\n    series: [{series: up, values: '0x3'}]\n"
        "    expect:\n      - {playbook: p, status: done}\n",
        encoding="utf-8",
    )
    with pytest.raises(InvalidDocumentError) as caught:
        load_model(path, PlaybookTestFile)
    [problem] = caught.value.problems
    assert (problem.line, problem.field) == (6, "tests.0.expect.0.status")
    assert all(status.value in problem.message for status in ActionStatus)
    assert problem.message.count("'dry-run'") == 1


def test_series_longer_than_the_limit_are_refused_before_they_are_built() -> None:
    with pytest.raises(ValueError, match="at most"):
        expand_values("0x10000000000")
    assert len(expand_values(f"0x{MAX_POINTS - 1}")) == MAX_POINTS


def test_alerts_repeated_beyond_the_limit_are_refused() -> None:
    alert = {"labels": {"alertname": "A"}, "starts_at": "0s", "ends_at": "52w", "repeat": "1ms"}
    with pytest.raises(ValueError, match="notifications"):
        PlaybookTest.model_validate({"name": "t", "alerts": [alert]})
