"""`aiops watch`: the engine fed by Prometheus. Polls the configured PromQL signals (AIOPS_PROMETHEUS_URL,
AIOPS_PROMQL_QUERIES) and/or takes every sample Prometheus remote-writes to /api/v1/write, takes Alertmanager's
webhook on /api/v1/alerts, and serves the HTTP API until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import typer

from engine.app.cli_common import configure_logging, open_with_api, operator_errors
from engine.app.prometheus_engine import open_prometheus_engine
from engine.app.settings import Settings, load_settings
from engine.domain.clock import SystemClock


def watch() -> None:
    """Detect anomalies in what Prometheus has (PromQL polling, remote_write), take Alertmanager's alerts, open
    incidents and run playbooks; serve the HTTP API (with /metrics) until Ctrl-C."""
    with operator_errors():
        settings = load_settings()
        configure_logging(settings)
        asyncio.run(_watch(settings))


async def _watch(settings: Settings) -> None:
    clock = SystemClock()
    engine, server = await open_with_api(settings, lambda: open_prometheus_engine(settings, clock=clock))
    host, port = server.address
    sources = [f"PromQL on {settings.prometheus_url}"] if engine.promql is not None else []
    sources += ["remote_write on /api/v1/write"] if engine.remote_write is not None else []
    typer.echo(
        f"aiops-engine watching {' and '.join(sources)}, mode {settings.mode.value}; API on http://{host}:{port}"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await engine.recover()
        async with asyncio.TaskGroup() as group:
            http = group.create_task(server.serve(), name="http")
            chores = group.create_task(engine.housekeeping(clock), name="housekeeping")
            pipeline = group.create_task(engine.pipeline.run(), name="pipeline")
            await stop.wait()
            for task in (pipeline, chores):
                task.cancel()
            server.stop()
            await http
            for task in (pipeline, chores):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await engine.close()
    typer.echo("aiops-engine stopped.")
