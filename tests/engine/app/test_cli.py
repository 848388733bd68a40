"""The `aiops` command as a user runs it: a real process, real sockets, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from engine.adapters.api.auth import Role, TokenBook
from tests.engine.adapters.tokens import SPEC, bearer
from tests.support.engine_process import free_port

REPO = Path(__file__).resolve().parents[3]
AIOPS = [sys.executable, "-c", "from engine.app.cli import main; main()"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    return env | extra


def _aiops(*args: str, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AIOPS, *args], cwd=REPO, env=_env(**env), capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture(scope="module")
def demo_report() -> dict[str, object]:
    done = subprocess.run(
        [*AIOPS, "demo", "--fast", "--json"],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def test_demo_prints_the_summary_counts(demo_report: dict[str, object]) -> None:
    for key in ("samples", "anomalies", "incidents", "actions", "elapsed_s"):
        assert key in demo_report
    assert demo_report["samples"] == 11 * 2880


def test_demo_detects_every_labelled_episode_and_nothing_else(demo_report: dict[str, object]) -> None:
    episodes = demo_report["episodes"]
    assert isinstance(episodes, list)
    assert [e["kind"] for e in episodes if not e["detected"]] == []
    assert demo_report["unexpected_incidents"] == 0
    assert demo_report["incidents"] == len(episodes)
    # One incident per problem, though each moves two or three series, with its cause ranked first.
    assert [e["incidents_opened"] for e in episodes] == [1] * len(episodes)
    assert all(e["cause_right"] for e in episodes)
    assert demo_report["signals"] > demo_report["incidents"]


def test_demo_runs_every_matching_playbook_in_dry_run(demo_report: dict[str, object]) -> None:
    # Playbooks fire on the probable cause: scale-out for the traffic surge and the slow dependency (1 step each),
    # the rollback for the bad rollout (2 steps), a restart for the GPU memory leak, retraining for the drift (which
    # waits for approval). The errors that follow the slow dependency and the drift roll nothing back.
    assert demo_report["actions"] == 6
    assert demo_report["action_status"] == {"dry-run": 5, "awaiting-approval": 1}


def test_a_playbook_backtest_groups_each_problem_s_signals_by_the_directory_s_rules(tmp_path: Path) -> None:
    scenario = REPO / "engine" / "scenarios" / "serving_stack_in_trouble"
    done = _aiops("playbooks", "backtest", "--scenario", str(scenario), "--json", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    opened = json.loads(done.stdout)["incidents_opened"]
    # The shipped _correlation.yaml: five problems, each one incident holding its two or three series.
    assert len(opened) == 5
    assert all(len(incident["signals"]) >= 2 for incident in opened)


def test_unknown_setting_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _aiops("demo", "--fast", "--json", tmp=tmp_path, AIOPS_PLAYBOK_DIR="x")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "aiops: error: unknown setting AIOPS_PLAYBOK_DIR (did you mean AIOPS_PLAYBOOK_DIR?)"
    ]


@pytest.mark.parametrize("variable", ["AIOPS_PLAYBOOK_DIR", "AIOPS_SCENARIO_DIR"])
def test_missing_directory_gives_one_line_and_exit_2(tmp_path: Path, variable: str) -> None:
    done = _aiops("demo", "--fast", tmp=tmp_path, **{variable: str(tmp_path / "missing")})
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "does not exist" in line


def test_invalid_playbook_names_file_line_and_field(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: x\ntriggers:\n  - series: up\nsteps:\n  - action: reboot_everything\n")
    done = _aiops("demo", "--fast", tmp=tmp_path, AIOPS_PLAYBOOK_DIR=str(tmp_path))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f"{tmp_path / 'bad.yaml'}:5: steps.0.action:" in line
    assert "unknown action 'reboot_everything'" in line


def test_port_in_use_gives_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = _aiops(
            "run",
            "--exit-when-done",
            tmp=tmp_path,
            AIOPS_HTTP_PORT=str(port),
            AIOPS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}",
        )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert f"cannot listen on 127.0.0.1:{port}" in line


@pytest.fixture
def running_engine(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    port = free_port()
    process = subprocess.Popen(
        [*AIOPS, "run", "--speed", "600"],
        cwd=REPO,
        env=_env(
            AIOPS_HTTP_PORT=str(port),
            AIOPS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'run.db'}",
            AIOPS_API_TOKENS=SPEC,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail("the engine's API did not come up")
    yield process, base
    if process.poll() is None:
        process.kill()
        process.wait()


def test_run_serves_the_api_while_replaying_and_stops_cleanly_on_ctrl_c(
    running_engine: tuple[subprocess.Popen[str], str],
) -> None:
    process, base = running_engine
    assert httpx.get(f"{base}/readyz", timeout=5).json() == {"status": "ready"}
    assert httpx.get(f"{base}/api/v1/incidents", timeout=5).status_code == 401
    assert httpx.get(f"{base}/api/v1/incidents", headers=bearer(Role.VIEWER), timeout=5).status_code == 200
    metrics = httpx.get(f"{base}/metrics/", timeout=5).text
    assert "aiops_samples_total" in metrics
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err
    assert "aiops-engine stopped." in out


def test_run_to_the_end_then_exit(tmp_path: Path) -> None:
    done = _aiops(
        "run",
        "--exit-when-done",
        "--speed",
        "1000000",
        tmp=tmp_path,
        AIOPS_HTTP_PORT=str(free_port()),
        AIOPS_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'e.db'}",
    )
    assert done.returncode == 0, done.stderr
    assert "incidents outside the labelled episodes: 0" in done.stdout
    assert "aiops-engine stopped." in done.stdout
    assert "this run's admin token is aiops_" in done.stdout


def test_token_command_prints_a_secret_and_its_configuration_entry(tmp_path: Path) -> None:
    done = _aiops("token", "alice", "--role", "admin", tmp=tmp_path)
    secret_line, entry_line = done.stdout.strip().splitlines()
    secret = secret_line.removeprefix("secret: ")
    name, role, digest = entry_line.removeprefix("AIOPS_API_TOKENS entry: ").split(":")
    assert (name, role) == ("alice", "admin")
    assert TokenBook.parse(f"{name}:{role}:{digest}").authenticate(secret) is not None
    assert _aiops("token", "bob", "--role", "root", tmp=tmp_path).returncode == 2


def test_playbooks_validate_accepts_the_shipped_set(tmp_path: Path) -> None:
    done = _aiops("playbooks", "validate", "playbooks", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "5 playbooks valid" in done.stdout


def test_playbooks_test_takes_the_playbook_directory_and_runs_its_tests(tmp_path: Path) -> None:
    done = _aiops("playbooks", "test", "playbooks", tmp=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    shipped = sum(path.read_text().count("\n  - name:") for path in (REPO / "playbooks" / "tests").glob("*.yaml"))
    assert done.stdout.strip().splitlines()[-1] == f"{shipped} passed, 0 failed"
    assert shipped >= 18


def test_playbooks_validate_lists_every_problem_and_fails(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: a\ntriggers:\n  - series: up\nsteps:\n  - action: reboot\n")
    (tmp_path / "b.yaml").write_text("name: b\ntriggers: []\nsteps:\n  - action: rollout_undo\n")
    done = _aiops("playbooks", "validate", str(tmp_path), tmp=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert any(line.startswith(f"{tmp_path / 'a.yaml'}:5: steps.0.action:") for line in lines)
    assert any(line.startswith(f"{tmp_path / 'b.yaml'}:2: triggers:") for line in lines)


def test_playbooks_validate_prints_warnings_and_passes(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "name: a\ntriggers:\n  - series: up\nsteps:\n  - action: rollout_restart\n    params:\n"
        "      namespace: serving\n      deployment: '{{ incident.labels.job }}'\n"
    )
    done = _aiops("playbooks", "validate", str(tmp_path), tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    [warning] = done.stderr.strip().splitlines()
    where = f"{tmp_path / 'a.yaml'}:8: steps.0.params.deployment"
    assert warning.startswith(f"{where}: warning: reads incident label(s) job")


def test_backtest_plots_a_series_with_its_detections_and_labelled_windows(tmp_path: Path) -> None:
    rng = __import__("numpy").random.default_rng(3)
    values = 50 + rng.normal(0, 1, 1200)
    values[900:910] += 25
    rows = [f"2026-01-01 {i // 60:02d}:{i % 60:02d}:00,{v:.3f}" for i, v in enumerate(values[:1440])]
    data = tmp_path / "latency.csv"
    data.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps({"demo/latency.csv": [["2026-01-01 14:55:00.000000", "2026-01-01 15:20:00.000000"]]}))
    plot = tmp_path / "plots" / "latency.svg"
    done = _aiops("backtest", str(data), "--labels", str(labels), "--plot", str(plot), "--json", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["points"] == 1200
    assert report["windows_detected"] == 1
    assert 1 <= report["detections"] <= 5
    assert report["plot"] == str(plot)
    picture = ElementTree.parse(plot).getroot()
    svg = "{http://www.w3.org/2000/svg}"
    assert picture.tag == f"{svg}svg"
    dots = picture.findall(f"{svg}circle[@class='detection']")
    assert len(dots) == report["detections"]
    assert len(picture.findall(f"{svg}rect[@class='window']")) == 2  # the labelled window, above and below
    assert {line.get("class") for line in picture.findall(f"{svg}polyline")} == {"values", "scores"}


def test_backtest_refuses_a_plot_name_that_is_not_svg(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text("timestamp,value\n2026-01-01 00:00:00,1\n")
    done = _aiops("backtest", str(data), "--plot", str(tmp_path / "x.png"), tmp=tmp_path)
    assert done.returncode == 2
    assert "--plot writes an SVG picture: name the file *.svg, not x.png" in done.stderr
    assert not (tmp_path / "x.png").exists()


def test_backtest_reports_an_unknown_detector_in_one_line(tmp_path: Path) -> None:
    data = tmp_path / "x.csv"
    data.write_text("timestamp,value\n2026-01-01 00:00:00,1\n")
    done = _aiops("backtest", str(data), "--detector", "magic", tmp=tmp_path)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "unknown detector 'magic'" in line
