"""`aiops playbooks validate` and `aiops playbooks test` on hostile input: a report and an exit status, never a
traceback or a run that does not end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
AIOPS = [sys.executable, "-c", "from engine.app.cli import main; main()"]
EXPLODING = """\
name: explodes
triggers:
  - series: up
steps:
  - action: rollout_restart
    params:
      namespace: serving
      deployment: "{{ range(10**10)|list }}"
"""
TESTS = """\
tests:
  - name: a spike restarts the deployment
    anomaly: value > 0.5
    series:
      - series: up
        values: 0x5 1x5 0x20
    expect:
      - {playbook: explodes, status: dry-run}
"""


def _aiops(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    return subprocess.run([*AIOPS, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_a_playbook_whose_template_explodes_is_reported_as_a_failed_test(tmp_path: Path) -> None:
    (tmp_path / "explodes.yaml").write_text(EXPLODING)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "explodes.yaml").write_text(TESTS)
    done = _aiops("playbooks", "test", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("FAIL ")
    assert lines[-1] == "0 passed, 1 failed"


def test_an_alias_bomb_is_reported_by_validate(tmp_path: Path) -> None:
    bomb = ["name: bomb", "x0: &x0 [a, a, a, a, a, a, a, a, a]"]
    bomb += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * 9)}]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    done = _aiops("playbooks", "validate", str(tmp_path))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith(f"{tmp_path / 'bomb.yaml'}:")


def test_backtest_names_the_triggers_that_no_series_of_the_data_matched(tmp_path: Path) -> None:
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    (playbooks / "restart.yaml").write_text(
        "name: restart\n"
        "triggers:\n"
        "  - series: latency_p99\n"
        "    labels: {model: fraud}\n"
        "  - series: latency_p99\n"
        "    labels: {model: churn}\n"
        "  - series: latncy_p99\n"
        "steps:\n"
        "  - action: rollout_restart\n"
        "    params: {namespace: serving, deployment: fraud}\n"
    )
    data = tmp_path / "p99.csv"
    data.write_text("timestamp,value\n" + "".join(f"2026-01-01 00:{i:02d}:00,0.2\n" for i in range(30)))
    done = _aiops(
        "playbooks",
        "backtest",
        "--series",
        f'latency_p99{{model="fraud"}}={data}',
        "--playbooks",
        str(playbooks),
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [(t["playbook"], t["trigger"], t["series"], t["labels"]) for t in report["unmatched_triggers"]] == [
        ("restart", 1, "latency_p99", {"model": "churn"}),
        ("restart", 2, "latncy_p99", {}),
    ]
    assert report["series_present"] == ["latency_p99"]
