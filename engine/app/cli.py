"""The `aiops` command line: `aiops run` (the embedded engine with its API) and `aiops demo` (the same scenario,
unattended, with a machine-readable summary).

Operator mistakes (bad settings, missing directories, a port in use) end with one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from detectors.registry import UnknownDetectorError
from engine.adapters.http_server import HttpServer, bind
from engine.adapters.label_windows import windows_for
from engine.adapters.playbook_files import load_playbook_set
from engine.adapters.plots import plot_backtest
from engine.adapters.series_csv import read_series_csv
from engine.adapters.yaml_documents import InvalidDocumentError, load_model
from engine.app.bootstrap import EmbeddedEngine, open_embedded
from engine.app.console import ProgressView, print_summary
from engine.app.settings import Settings, load_settings
from engine.app.summary import RunSummary
from engine.core.backtest import backtest as run_backtest
from engine.core.playbooks.model import playbook_json_schema
from engine.core.playbooks.testing import PlaybookTestFile, describe_failure, run_test
from engine.domain.clock import SystemClock
from engine.domain.errors import ConfigurationError

cli = typer.Typer(
    name="aiops",
    help="aiops-engine: anomaly detection and safe auto-remediation around ML serving.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_CONFIGURATION = 2


@contextlib.contextmanager
def _operator_errors() -> Iterator[None]:
    try:
        yield
    except ConfigurationError as exc:
        typer.echo(f"aiops: error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIGURATION) from None


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    with _operator_errors():
        settings = load_settings()
        _configure_logging(settings)
        asyncio.run(_run(settings, exit_when_done=exit_when_done, speed=speed or settings.replay_speed))


async def _run(settings: Settings, *, exit_when_done: bool, speed: float) -> None:
    console = Console(stderr=False)
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
    server = HttpServer(engine.api(), sock)
    host, port = server.address
    console.print(
        f"[bold]aiops-engine[/] replaying [cyan]{engine.scenario.name}[/] at {speed:g}x, mode "
        f"[bold]{settings.mode.value}[/]; API on http://{host}:{port} (/healthz, /api/v1/incidents, /metrics)"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.perf_counter()
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(server.serve(), name="http")
            expiry = group.create_task(engine.expire_approvals(clock), name="approval-expiry")
            watcher = (
                group.create_task(engine.playbooks.watch(settings.playbook_reload_s), name="playbooks")
                if settings.playbook_reload_s > 0
                else None
            )
            replay = group.create_task(engine.pipeline.run(), name="pipeline")
            stopping = group.create_task(stop.wait(), name="stop")
            with view.progress:
                await asyncio.wait({replay, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if replay.done():
                print_summary(console, summary, engine.scenario, time.perf_counter() - started)
                if not exit_when_done:
                    console.print(f"API still serving on http://{host}:{port}; press Ctrl-C to stop.")
                    await stop.wait()
            else:
                replay.cancel()
                console.print("\nstopped before the replay finished")
            stopping.cancel()
            expiry.cancel()
            if watcher is not None:
                watcher.cancel()
            server.stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await engine.close()
    console.print("aiops-engine stopped.")


@cli.command()
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="replay as fast as the machine allows")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object instead of the summary")] = False,
    database_url: Annotated[
        str, typer.Option(help="store for this demo (default: a private in-memory SQLite database)")
    ] = "sqlite+aiosqlite:///:memory:",
) -> None:
    """Replay the bundled scenario without the API and report what was detected and done."""
    with _operator_errors():
        settings = load_settings(database_url=database_url)
        _configure_logging(settings)
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
        print_summary(console, summary, engine.scenario, elapsed)
    return demo_report(engine, elapsed)


def demo_report(engine: EmbeddedEngine, elapsed_s: float) -> dict[str, Any]:
    summary = engine.summary
    outcomes = summary.episode_outcomes(engine.scenario)
    return {
        **summary.counts(),
        "elapsed_s": round(elapsed_s, 4),
        "samples_per_s": round(summary.samples / elapsed_s) if elapsed_s > 0 else None,
        "scenario": engine.scenario.name,
        "mode": engine.settings.mode.value,
        "detector": engine.settings.detector,
        "episodes": [
            {
                "kind": o.episode.kind,
                "series": str(o.episode.series),
                "detected": o.detected,
                "incident": o.incident.id if o.incident else None,
                "delay_s": o.delay_s,
            }
            for o in outcomes
        ],
        "episodes_detected": sum(o.detected for o in outcomes),
        "unexpected_incidents": len(summary.unexpected_incidents(engine.scenario)),
        "action_status": dict(summary.action_status),
    }


@cli.command()
def backtest(
    csv_file: Annotated[Path, typer.Argument(help="a timestamp,value CSV file (NAB layout works)")],
    detector: Annotated[str, typer.Option(help="detector family")] = "default",
    threshold: Annotated[float | None, typer.Option(help="detection threshold (default: the detector's)")] = None,
    labels: Annotated[Path | None, typer.Option(help="labelled windows, NAB combined_windows.json format")] = None,
    plot: Annotated[Path | None, typer.Option(help="write a PNG of the series, scores and detections")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as one JSON object")] = False,
) -> None:
    """Run a detector over a recorded series as it would have run live; plot what it would have flagged."""
    with _operator_errors():
        timestamps, values = read_series_csv(csv_file)
        windows = windows_for(labels, csv_file) if labels is not None else []
        try:
            result = run_backtest(timestamps, values, detector=detector, threshold=threshold)
        except UnknownDetectorError as exc:
            raise ConfigurationError(str(exc)) from exc
        if plot is not None:
            plot_backtest(result, plot, title=f"{csv_file.name}: {detector}", windows=windows)
    hits = result.timestamps[result.detections]
    caught = sum(bool(((hits >= start) & (hits <= end)).any()) for start, end in windows)
    report = {
        "file": str(csv_file),
        "detector": detector,
        "threshold": result.threshold,
        "points": len(values),
        "detections": result.detection_count,
        "windows": len(windows),
        "windows_detected": caught,
        "plot": str(plot) if plot else None,
    }
    if as_json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        typer.echo(
            f"{csv_file.name}: {report['points']} points, {report['detections']} detections at threshold "
            f"{result.threshold:g}"
            + (f", {caught}/{len(windows)} labelled windows detected" if windows else "")
            + (f"; plot written to {plot}" if plot else "")
        )


playbooks_cli = typer.Typer(help="Validate playbooks and publish their JSON Schema.", no_args_is_help=True)
cli.add_typer(playbooks_cli, name="playbooks")

SCHEMA_FILE = "playbook.schema.json"


@playbooks_cli.command("validate")
def playbooks_validate(
    directory: Annotated[Path, typer.Argument(help="directory of playbook YAML files")] = Path("playbooks"),
) -> None:
    """Validate every playbook in DIRECTORY as a set; print each problem as file:line: field: message."""
    try:
        playbooks = load_playbook_set(directory).playbooks
    except InvalidDocumentError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    except ConfigurationError as exc:
        typer.echo(f"aiops: error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIGURATION) from None
    typer.echo(f"{len(playbooks)} playbooks valid: {', '.join(p.name for p in playbooks)}")


@playbooks_cli.command("test")
def playbooks_test(
    files: Annotated[list[Path], typer.Argument(help="playbook test files (YAML)")],
    playbook_dir: Annotated[Path, typer.Option("--playbooks", help="the playbooks under test")] = Path("playbooks"),
) -> None:
    """Run playbook unit tests: input series on a time axis, the steps expected, in order, with their guards."""
    with _operator_errors():
        loaded = load_playbook_set(playbook_dir)
        suites = [(path, load_model(path, PlaybookTestFile)) for path in files]
    failures = 0
    for path, suite in suites:
        for test in suite.tests:
            outcome = asyncio.run(run_test(test, loaded.playbooks, loaded.policy))
            mark = "PASS" if outcome.passed else "FAIL"
            typer.echo(f"{mark} {path}: {test.name}")
            if not outcome.passed:
                failures += 1
                for line in describe_failure(outcome):
                    typer.echo(line)
    total = sum(len(suite.tests) for _, suite in suites)
    typer.echo(f"{total - failures} passed, {failures} failed")
    if failures:
        raise typer.Exit(1)


@playbooks_cli.command("schema")
def playbooks_schema(
    out: Annotated[Path | None, typer.Option(help=f"write to this file (e.g. playbooks/{SCHEMA_FILE})")] = None,
) -> None:
    """Print (or write) the JSON Schema of playbook files, generated from the validating models."""
    text = json.dumps(playbook_json_schema(), indent=2, sort_keys=True) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")


def main() -> None:
    cli()
