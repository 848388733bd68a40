"""The Prometheus rule files the project ships: valid, each with promtool unit tests, and those tests pass."""

import shutil
import subprocess
from pathlib import Path

import pytest
from ruamel.yaml import YAML

_YAML = YAML(typ="safe")
RULES = Path(__file__).resolve().parents[1] / "helm" / "prometheus-rules"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed (make test installs it)")


def _rule_files() -> list[Path]:
    return sorted(RULES.glob("*.yml"))


def test_every_rule_file_is_covered_by_a_unit_test() -> None:
    tested = set()
    for test_file in (RULES / "tests").glob("*.yml"):
        tested |= {(test_file.parent / name).resolve() for name in _YAML.load(test_file.read_text())["rule_files"]}
    assert _rule_files()
    assert {path.resolve() for path in _rule_files()} <= tested


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for path in _rule_files():
        for group in _YAML.load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert rule["labels"]["severity"] in {"info", "warning", "critical"}, (path.name, rule["alert"])
                assert rule["annotations"]["summary"], (path.name, rule["alert"])


@needs_promtool
def test_promtool_checks_and_unit_tests_pass() -> None:
    assert PROMTOOL is not None
    check = subprocess.run(
        [PROMTOOL, "check", "rules", *map(str, _rule_files())], capture_output=True, text=True, check=False
    )
    assert check.returncode == 0, check.stdout + check.stderr
    tests = sorted(str(path.relative_to(RULES)) for path in (RULES / "tests").glob("*.yml"))
    run = subprocess.run([PROMTOOL, "test", "rules", *tests], cwd=RULES, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
