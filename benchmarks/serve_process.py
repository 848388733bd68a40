"""``aiops serve`` as a process of its own, for benchmarks that measure what a deployment would see: its resident
memory and how many samples it has detected (``aiops_samples_total`` on its ``/metrics``)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

from benchmarks.loopback_http import free_port

REPO = Path(__file__).resolve().parents[1]
SAMPLES_TOTAL = re.compile(rb"^aiops_samples_total (\S+)$", re.MULTILINE)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class ServeProcess:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    def rss_mb(self) -> float:
        return rss_mb(self.process.pid)

    def samples(self) -> float:
        """Samples detected so far (0 before ``/metrics`` answers)."""
        self.check()
        try:
            found = SAMPLES_TOTAL.search(httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).content)
        except httpx.TransportError:
            return 0.0
        return float(found.group(1)) if found else 0.0

    def check(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"aiops serve stopped: {self.log.read_text()[-2000:]}")


@contextmanager
def serve(bootstrap: str, topic: str, work: Path, **settings: str) -> Iterator[ServeProcess]:
    """``aiops serve`` on ``topic`` (its own consumer group unless ``AIOPS_KAFKA_GROUP_ID`` is given; SQLite in
    ``work`` unless ``AIOPS_DATABASE_URL`` is), stopped afterwards; ``settings`` are more ``AIOPS_*`` variables."""
    port = free_port()
    env: Mapping[str, str] = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | {
        "AIOPS_KAFKA_BOOTSTRAP": bootstrap,
        "AIOPS_KAFKA_TOPICS": topic,
        "AIOPS_KAFKA_GROUP_ID": topic,
        "AIOPS_DATABASE_URL": f"sqlite+aiosqlite:///{work / f'{topic}-{port}.db'}",
        "AIOPS_HTTP_HOST": "127.0.0.1",
        "AIOPS_HTTP_PORT": str(port),
        **settings,
    }
    log = work / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-c", "from engine.app.cli import main; main()", "serve"],
            cwd=REPO,
            env=dict(env),
            stdout=output,
            stderr=output,
        )
        try:
            yield ServeProcess(process, port, log)
        finally:
            process.terminate()
            process.wait(timeout=60)


def wait_for_samples(processes: list[ServeProcess], samples: int, timeout_s: float = 1800.0) -> float:
    """Seconds until ``processes`` together have detected ``samples`` samples."""
    started = time.monotonic()
    while sum(process.samples() for process in processes) < samples:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"fewer than {samples} samples detected in {timeout_s} s")
        time.sleep(0.2)
    return time.monotonic() - started
