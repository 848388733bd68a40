"""A real `aiops run` process for end-to-end tests: the bundled scenario replayed at full speed, the API served on
a free loopback port until the test is done."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import SPEC, bearer

REPO = Path(__file__).resolve().parents[2]


class EngineDidNotStartError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_engine(work: Path, **settings: str) -> Iterator[str]:
    """Yields the engine's base URL once the replay has finished; ``settings`` are extra AIOPS_* variables."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | {
        "AIOPS_HTTP_PORT": str(port),
        "AIOPS_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'engine.db'}",
        "AIOPS_API_TOKENS": SPEC,
        **settings,
    }
    log = (work / "engine.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-c", "from engine.app.cli import main; main()", "run", "--speed", "1000000"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_replay(base, process, work / "engine.log")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def _wait_for_replay(base: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineDidNotStartError(f"aiops run exited early: {log.read_text()[-2000:]}")
        try:
            status = httpx.get(f"{base}/api/v1/status", headers=bearer(Role.VIEWER), timeout=2).json()
            if status["samples"] >= status["total_samples"]:
                return
        except (httpx.TransportError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise EngineDidNotStartError("the replay did not finish within 180 s")
