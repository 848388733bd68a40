"""A store the engine cannot outlive ends the `aiops` process with one line on stderr and exit status 3, never a
traceback, whether it is missing from the start or goes away while the engine runs; and its password is never
shown. Real processes against a PostgreSQL server of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from benchmarks.services import PrivatePostgres
from engine.app.cli_common import EXIT_CONFIGURATION, EXIT_UNAVAILABLE
from tests.support.engine_process import free_port
from tests.support.private_postgres import module_postgres

REPO = Path(__file__).resolve().parents[3]
AIOPS = [sys.executable, "-c", "from engine.app.cli import main; main()"]
SECRET = "hunter2-secret"


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | extra


def _assert_one_line_error(stderr: str) -> None:
    """No traceback, and the process's own last word is one ``aiops: error:`` line (log lines may come before)."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("aiops: error: "), stderr
    assert [line for line in lines if line.startswith("aiops: error: ")] == lines[-1:]
    assert SECRET not in stderr


def test_a_store_unreachable_from_the_start_ends_with_one_line_and_status_3() -> None:
    url = f"postgresql+asyncpg://aiops:{SECRET}@127.0.0.1:{free_port()}/aiops"
    started = time.monotonic()
    done = subprocess.run(
        [*AIOPS, "demo", "--fast", "--json", "--database-url", url],
        cwd=REPO,
        env=_env(AIOPS_STORE_OUTAGE_LIMIT_S="1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_UNAVAILABLE == 3
    _assert_one_line_error(done.stderr)
    # It waited for the store (the outage limit) before giving up.
    assert time.monotonic() - started >= 1.0


def test_a_malformed_database_url_ends_with_one_line_and_status_2_without_its_password() -> None:
    url = f"postgresql+asyncpg://aiops:{SECRET}@127.0.0.1:notaport/aiops"
    done = subprocess.run(
        [*AIOPS, "demo", "--fast", "--json", "--database-url", url],
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == EXIT_CONFIGURATION
    _assert_one_line_error(done.stderr)


postgres = pytest.fixture(scope="module")(module_postgres)


def test_a_store_that_goes_away_while_the_engine_runs_ends_it_with_one_line_and_status_3(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    port = free_port()
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()  # none: the incident stage is then the one writer while the scenario is replayed
    process = subprocess.Popen(
        # Slow enough that the scenario's incidents are still ahead when the store goes away.
        [*AIOPS, "run", "--speed", "4000"],
        cwd=REPO,
        env=_env(
            AIOPS_DATABASE_URL=postgres.url,
            AIOPS_HTTP_PORT=str(port),
            AIOPS_PLAYBOOK_DIR=str(playbooks),
            AIOPS_STORE_OUTAGE_LIMIT_S="2",
        ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_until_ready(f"http://127.0.0.1:{port}", process)
        postgres.stop()
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if not postgres.running():
            postgres.start()
    assert process.returncode == EXIT_UNAVAILABLE
    _assert_one_line_error(stderr)


def _wait_until_ready(base: str, process: subprocess.Popen[str]) -> None:
    # The engine starts in seconds, but a loaded test machine has taken close to a minute.
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert process.poll() is None, "the engine exited before it was ready"
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the engine did not become ready within 180 s")
