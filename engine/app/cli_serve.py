"""`aiops serve`: the Kafka-driven engine. Consumes metric samples from Kafka in a consumer group, publishes
anomalies, incident changes and action results to output topics, and serves the HTTP API until SIGINT/SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal

import typer

from engine.app.cli_common import configure_logging, open_with_api, operator_errors
from engine.app.kafka_engine import open_kafka_engine
from engine.app.settings import Settings, load_settings
from engine.domain.clock import SystemClock


def serve() -> None:
    """Consume metric samples from Kafka (AIOPS_KAFKA_*), detect, open incidents, run playbooks and publish the
    results to Kafka; serve the HTTP API (with /metrics) until Ctrl-C."""
    with operator_errors():
        settings = load_settings()
        configure_logging(settings)
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    clock = SystemClock()
    engine, server = await open_with_api(settings, lambda: open_kafka_engine(settings, clock=clock))
    host, port = server.address
    typer.echo(
        f"aiops-engine consuming {settings.kafka_topics} from {settings.kafka_bootstrap} as group "
        f"{settings.kafka_group_id}, mode {settings.mode.value}; API on http://{host}:{port}"
    )
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # Stop taking new records; the pipeline drains what it holds and the publisher flushes.
        loop.add_signal_handler(signum, engine.source.stop)
    try:
        await engine.recover()
        async with asyncio.TaskGroup() as group:
            http = group.create_task(server.serve(), name="http")
            expiry = group.create_task(engine.housekeeping(clock), name="housekeeping")
            await engine.run()
            expiry.cancel()
            server.stop()
            await http
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await engine.close()
    typer.echo("aiops-engine stopped.")
