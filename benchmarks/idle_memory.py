"""Resident memory of an engine at rest: what a pod must hold before any series arrives.

    python -m benchmarks.idle_memory [--kafka-bootstrap HOST:PORT] [--settle-seconds 20] [--json]

Starts ``aiops serve`` (consuming an empty topic of its own, SQLite store, dry-run, the shipped playbooks) and reads
its resident set (``VmRSS`` of ``/proc/<pid>/status``) once ``/healthz`` answers and ``--settle-seconds`` have
passed; as the baseline measured in the same run, a bare Python interpreter and one that only imports the CLI.
Needs a broker (``--kafka-bootstrap``, default ``AIOPS_TEST_KAFKA_BOOTSTRAP``). Target: under 200 MB for ``aiops
serve``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

from benchmarks.serve_process import serve

START_TIMEOUT_S = 60.0


def _python_rss_mb(code: str) -> float:
    probe = f"{code}\nimport pathlib\nprint(pathlib.Path('/proc/self/status').read_text())"
    status = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def serve_rss_mb(bootstrap: str, settle_s: float, work: Path) -> float:
    with serve(bootstrap, f"bench-idle-{uuid.uuid4().hex[:8]}", work) as process:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"aiops serve did not start: {process.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"http://127.0.0.1:{process.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        time.sleep(settle_s)
        return process.rss_mb()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kafka-bootstrap", default=os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP", ""))
    parser.add_argument("--settle-seconds", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.kafka_bootstrap:
        parser.error("a broker is needed: --kafka-bootstrap or AIOPS_TEST_KAFKA_BOOTSTRAP")
    with tempfile.TemporaryDirectory(prefix="aiops-idle-") as work:
        result = {
            "python_mb": round(_python_rss_mb("pass"), 1),
            "cli_imported_mb": round(_python_rss_mb("import engine.app.cli"), 1),
            "serve_idle_mb": round(serve_rss_mb(args.kafka_bootstrap, args.settle_seconds, Path(work)), 1),
            "target_serve_idle_mb": 200,
        }
    if args.json:
        print(json.dumps(result))
    else:
        for name, value in result.items():
            print(f"{name:22} {value}")


if __name__ == "__main__":
    main()
