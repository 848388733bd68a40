"""The `aiops` command line: `aiops run` (the embedded engine with its API) and `aiops demo` (the same scenario,
unattended, with a machine-readable summary).

Operator mistakes (bad settings, missing directories, a port in use) end with one line on stderr and exit
status 2, a store that stays unreachable past AIOPS_STORE_OUTAGE_LIMIT_S with one line and exit status 3, never a
traceback (``cli_common.operator_errors``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console

from engine.adapters.api.auth import ApiToken, Role, TokenBook, hash_secret, new_secret
from engine.adapters.http_server import HttpServer, bind
from engine.app.bootstrap import EmbeddedEngine, open_embedded
from engine.app.cli_backtest import backtest
from engine.app.cli_common import EXIT_CONFIGURATION, configure_logging, operator_errors
from engine.app.cli_dashboards import dashboards_cli
from engine.app.cli_playbooks import playbooks_cli
from engine.app.cli_serve import serve
from engine.app.cli_watch import watch
from engine.app.console import ProgressView, print_summary
from engine.app.interpreter import shorten_thread_switches
from engine.app.settings import Settings, load_settings
from engine.app.summary import RunSummary
from engine.domain.clock import SystemClock

cli = typer.Typer(
    name="aiops",
    help="aiops-engine: anomaly detection and safe auto-remediation around ML serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@cli.command()
def run(
    exit_when_done: Annotated[
        bool, typer.Option("--exit-when-done", help="stop after the replay instead of serving until Ctrl-C")
    ] = False,
    speed: Annotated[
        float | None,
        typer.Option(help="event seconds per wall second (default: AIOPS_REPLAY_SPEED)", min=0.001),
    ] = None,
) -> None:
    """Run the engine on embedded defaults: replay the bundled scenario, detect, open incidents, run playbooks
    (dry-run unless configured otherwise) and serve the HTTP API until Ctrl-C."""
    with operator_errors():
        settings = load_settings()
        configure_logging(settings)
        asyncio.run(_run(settings, exit_when_done=exit_when_done, speed=speed or settings.replay_speed))


async def _run(settings: Settings, *, exit_when_done: bool, speed: float) -> None:
    console = Console(stderr=False)
    tokens, one_off = _tokens(settings)
    sock = bind(settings.http_host, settings.http_port)
    summary = RunSummary()
    view = ProgressView(console, summary)
    clock = SystemClock()
    try:
        engine = await open_embedded(settings, clock=clock, speed=speed, summary=summary, observers=[view])
    except BaseException:
        sock.close()
        raise
    view.set_total(engine.source.total_samples)
    await engine.recover()
    server = HttpServer(engine.api(tokens), sock)
    shorten_thread_switches()
    host, port = server.address
    console.print(
        f"[bold]aiops-engine[/] replaying [cyan]{engine.scenario.name}[/] at {speed:g}x, mode "
        f"[bold]{settings.mode.value}[/]; API on http://{host}:{port} (/ui/, /api/v1/incidents, /metrics)",
        soft_wrap=True,
    )
    if one_off is not None:
        console.print(
            f"No AIOPS_API_TOKENS configured: this run's admin token is [bold]{one_off}[/] "
            f"(log in at http://{host}:{port}/ui/ or curl -H 'Authorization: Bearer {one_off}' ...)",
            soft_wrap=True,
        )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(server.serve(), name="http")
            expiry = group.create_task(engine.housekeeping(clock), name="housekeeping")
            replay = group.create_task(engine.pipeline.run(), name="pipeline")
            stopping = group.create_task(stop.wait(), name="stop")
            with view.progress:
                await asyncio.wait({replay, stopping}, return_when=asyncio.FIRST_COMPLETED)
            view.finish()
            if replay.done():
                print_summary(console, summary, engine.scenario, time.perf_counter() - started, engine.desk.rules)
                if not exit_when_done:
                    console.print(f"API still serving on http://{host}:{port}; press Ctrl-C to stop.")
                    await stop.wait()
            else:
                replay.cancel()
                console.print("\nstopped before the replay finished")
            stopping.cancel()
            expiry.cancel()
            server.stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await engine.close()
    console.print("aiops-engine stopped.")


def _tokens(settings: Settings) -> tuple[TokenBook, str | None]:
    """The configured tokens, or a one-off admin token for this run when none are configured."""
    book = TokenBook.parse(settings.api_tokens)
    if book:
        return book, None
    secret = new_secret()
    return book.with_token(ApiToken("local-admin", Role.ADMIN, hash_secret(secret))), secret


@cli.command()
def token(
    name: Annotated[str, typer.Argument(help="who or what uses the token; recorded in the audit trail")],
    role: Annotated[str, typer.Option(help="viewer, responder or admin")] = "responder",
) -> None:
    """Make a new API token: prints the secret (give it to its user) and the entry for AIOPS_API_TOKENS."""
    if role.upper() not in Role.__members__ or not name or ":" in name or "," in name:
        typer.echo("aiops: error: give a name without ':' or ',' and a role: viewer, responder or admin", err=True)
        raise typer.Exit(EXIT_CONFIGURATION)
    secret = new_secret()
    typer.echo(f"secret: {secret}")
    typer.echo(f"AIOPS_API_TOKENS entry: {name}:{role.lower()}:{hash_secret(secret)}")


@cli.command()
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="replay as fast as the machine allows")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of the summary")] = False,
    database_url: Annotated[
        str, typer.Option(help="store for this demo (default: a private in-memory SQLite database)")
    ] = "sqlite+aiosqlite:///:memory:",
) -> None:
    """Replay the bundled scenario without the API and report what was detected and done."""
    with operator_errors():
        settings = load_settings(database_url=database_url)
        configure_logging(settings)
        speed = None if fast else settings.replay_speed
        result = asyncio.run(_demo(settings, speed=speed, as_json=as_json))
    if as_json:
        sys.stdout.write(json.dumps(result, sort_keys=True) + "\n")


async def _demo(settings: Settings, *, speed: float | None, as_json: bool) -> dict[str, Any]:
    console = Console(stderr=True, quiet=as_json)
    summary = RunSummary()
    view = ProgressView(console, summary)
    engine = await open_embedded(
        settings, clock=SystemClock(), speed=speed, summary=summary, observers=[] if as_json else [view]
    )
    view.set_total(engine.source.total_samples)
    started = time.perf_counter()
    try:
        if as_json:
            await engine.pipeline.run()
        else:
            with view.progress:
                await engine.pipeline.run()
    finally:
        await engine.close()
    elapsed = time.perf_counter() - started
    if not as_json:
        view.finish()
        print_summary(console, summary, engine.scenario, elapsed, engine.desk.rules)
    return demo_report(engine, elapsed)


def demo_report(engine: EmbeddedEngine, elapsed_s: float) -> dict[str, Any]:
    summary = engine.summary
    outcomes = summary.episode_outcomes(engine.scenario, engine.desk.rules)
    return {
        **summary.counts(),
        "signals": summary.signal_count(),
        "elapsed_s": round(elapsed_s, 4),
        "samples_per_s": round(summary.samples / elapsed_s) if elapsed_s > 0 else None,
        "scenario": engine.scenario.name,
        "mode": engine.settings.mode.value,
        "detector": engine.settings.detector,
        "episodes": [
            {
                "kind": o.episode.kind,
                "series": str(o.episode.series),
                "moves": [str(series) for series in o.episode.moves],
                "detected": o.detected,
                "incident": o.incident.id if o.incident else None,
                "incidents_opened": len(o.incidents),
                "delay_s": o.delay_s,
                "cause_ranked_first": None if o.cause is None else str(o.cause.signal.series),
                "cause_right": o.cause_right,
            }
            for o in outcomes
        ],
        "episodes_detected": sum(o.detected for o in outcomes),
        "causes_right": sum(bool(o.cause_right) for o in outcomes),
        "unexpected_incidents": len(summary.unexpected_incidents(engine.scenario)),
        "action_status": dict(summary.action_status),
    }


cli.command()(backtest)
cli.command()(serve)
cli.command()(watch)
cli.add_typer(playbooks_cli, name="playbooks")
cli.add_typer(dashboards_cli, name="dashboards")


def main() -> None:
    cli()
