"""Real `aiops serve` processes for the tests that run several replicas: each with its API on a free loopback port
and its output in a log file of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import SPEC, bearer
from tests.support.engine_process import free_port

REPO = Path(__file__).resolve().parents[2]


class ServeProcess:
    """A real `aiops serve` process, its API on a free loopback port."""

    def __init__(self, work: Path, **settings: str) -> None:
        work.mkdir()
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | {
            "AIOPS_HTTP_PORT": str(self.port),
            "AIOPS_API_TOKENS": SPEC,
            **settings,
        }
        self.log = work / "engine.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", "from engine.app.cli import main; main()", "serve"],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    async def partitions(self) -> list[str]:
        if self.process.poll() is not None:
            raise AssertionError(f"aiops serve exited: {self.log.read_text()[-3000:]}")
        try:
            async with httpx.AsyncClient(timeout=2, headers=bearer(Role.VIEWER)) as http:
                status = (await http.get(f"http://127.0.0.1:{self.port}/api/v1/status")).json()
        except httpx.TransportError:
            return []
        return list(status.get("partitions", []))

    def stop(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        self.process.wait(timeout=60)


@contextmanager
def serving(
    work: Path, names: tuple[str, ...], settings: dict[str, dict[str, str]]
) -> Iterator[dict[str, ServeProcess]]:
    processes: dict[str, ServeProcess] = {}
    try:
        for name in names:
            processes[name] = ServeProcess(work / name, **settings[name])
        yield processes
    finally:
        for process in processes.values():
            process.stop(signal.SIGKILL)


def kafka_serve_env(bootstrap: str, topic: str, group: str, database_url: str, **settings: str) -> dict[str, str]:
    """The settings of an `aiops serve` in ``group`` on ``topic`` (its event topics named after it), storing in
    ``database_url``, with the shipped playbooks; ``settings`` are more AIOPS_* variables."""
    return {
        "AIOPS_KAFKA_BOOTSTRAP": bootstrap,
        "AIOPS_KAFKA_TOPICS": topic,
        "AIOPS_KAFKA_GROUP_ID": group,
        "AIOPS_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq",
        "AIOPS_KAFKA_ANOMALY_TOPIC": f"{topic}.anomalies",
        "AIOPS_KAFKA_INCIDENT_TOPIC": f"{topic}.incidents",
        "AIOPS_KAFKA_ACTION_TOPIC": f"{topic}.actions",
        "AIOPS_DATABASE_URL": database_url,
        "AIOPS_PLAYBOOK_DIR": str(REPO / "playbooks"),
        **settings,
    }
