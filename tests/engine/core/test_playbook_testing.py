import math
from pathlib import Path

import pytest

from engine.adapters.playbook_files import load_playbook_set
from engine.adapters.yaml_documents import load_model
from engine.core.playbooks.testing import PlaybookTest, PlaybookTestFile, expand_values, run_test
from engine.domain.events import SeriesKey

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
    with pytest.raises(ValueError, match="invalid labels"):
        SeriesKey.parse("up{job=api}")


@pytest.mark.parametrize("path", SHIPPED_TESTS, ids=lambda p: p.name)
async def test_shipped_playbooks_pass_their_tests(path: Path) -> None:
    shipped = load_playbook_set(REPO / "playbooks")
    for test in load_model(path, PlaybookTestFile).tests:
        outcome = await run_test(test, shipped.playbooks, shipped.policy)
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
