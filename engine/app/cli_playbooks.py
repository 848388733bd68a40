"""`aiops playbooks ...`: validate, test, backtest and publish the schema of playbooks."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console

from engine.adapters.kafka.recorded_topic import read_topic
from engine.adapters.playbook_files import load_playbook_set
from engine.adapters.scenario_files import load_scenario
from engine.adapters.series_csv import read_series_csv
from engine.adapters.yaml_documents import InvalidDocumentError, load_model
from engine.app.bootstrap import open_embedded
from engine.app.cli_common import EXIT_CONFIGURATION, operator_errors
from engine.app.console import ProgressView, print_summary
from engine.app.settings import Settings, load_settings
from engine.app.summary import RunSummary
from engine.core.playbooks.model import Playbook, playbook_json_schema
from engine.core.playbooks.testing import PlaybookTestFile, describe_failure, run_test
from engine.domain.clock import SystemClock
from engine.domain.errors import ConfigurationError
from engine.domain.events import ActionMode, SeriesKey
from engine.domain.promql_strings import quote
from engine.domain.scenario import RecordedSeries, Scenario

playbooks_cli = typer.Typer(help="Validate playbooks and publish their JSON Schema.", no_args_is_help=True)

SCHEMA_FILE = "playbook.schema.json"


@playbooks_cli.command("validate")
def playbooks_validate(
    directory: Annotated[Path, typer.Argument(help="directory of playbook YAML files")] = Path("playbooks"),
) -> None:
    """Validate every playbook in DIRECTORY as a set; print each problem as file:line: field: message (and each
    warning, which does not make the set invalid, as file:line: field: warning: message)."""
    try:
        loaded = load_playbook_set(directory)
    except InvalidDocumentError as exc:
        for problem in exc.problems:
            typer.echo(str(problem), err=True)
        raise typer.Exit(1) from None
    except ConfigurationError as exc:
        typer.echo(f"aiops: error: {exc}", err=True)
        raise typer.Exit(EXIT_CONFIGURATION) from None
    for warning in loaded.warnings:
        typer.echo(f"{warning.location}: warning: {warning.message}", err=True)
    playbooks = loaded.playbooks
    typer.echo(f"{len(playbooks)} playbooks valid: {', '.join(p.name for p in playbooks)}")


@playbooks_cli.command("test")
def playbooks_test(
    files: Annotated[
        list[Path],
        typer.Argument(help="playbook test files (YAML), or a playbook directory: its tests/*.yaml and playbooks"),
    ],
    playbook_dir: Annotated[
        Path | None, typer.Option("--playbooks", help="the playbooks under test [default: playbooks]")
    ] = None,
) -> None:
    """Run playbook unit tests: input series on a time axis, the steps expected, in order, with their guards."""
    with operator_errors():
        directories = [path for path in files if path.is_dir()]
        if playbook_dir is None:
            playbook_dir = directories[0] if len(directories) == 1 else Path("playbooks")
        loaded = load_playbook_set(playbook_dir)
        test_files = [found for path in files for found in _test_files(path)]
        suites = [(path, load_model(path, PlaybookTestFile)) for path in test_files]
    failures = 0
    for path, suite in suites:
        for test in suite.tests:
            outcome = asyncio.run(run_test(test, loaded.playbooks, loaded.policy, loaded.correlation))
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


def _test_files(path: Path) -> list[Path]:
    """A test file as it is; a playbook directory stands for the test files in its ``tests/`` folder."""
    if not path.is_dir():
        return [path]
    found = sorted((path / "tests").glob("*.yaml"))
    if not found:
        raise ConfigurationError(f"{path}: no playbook tests in {path / 'tests'}")
    return found


@playbooks_cli.command("backtest")
def playbooks_backtest(
    series: Annotated[
        list[str] | None,
        typer.Option(help="SELECTOR=FILE.csv, e.g. 'model_request_latency_p99_seconds{model=\"fraud\"}=p99.csv'"),
    ] = None,
    scenario_dir: Annotated[Path | None, typer.Option("--scenario", help="a scenario directory instead")] = None,
    kafka_topic: Annotated[
        str | None, typer.Option(help="a Kafka topic of metric samples instead, read from its start to its end")
    ] = None,
    kafka_bootstrap: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers for --kafka-topic (default: AIOPS_KAFKA_BOOTSTRAP)")
    ] = None,
    playbook_dir: Annotated[Path, typer.Option("--playbooks", help="the playbooks to replay")] = Path("playbooks"),
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Replay recorded data through the detectors and playbooks in dry-run and report what would have happened."""
    with operator_errors():
        settings = load_settings(
            database_url="sqlite+aiosqlite:///:memory:", playbook_dir=playbook_dir, mode=ActionMode.DRY_RUN
        )
        if kafka_topic is not None:
            scenario = _from_kafka(kafka_bootstrap or settings.kafka_bootstrap, kafka_topic, quiet=as_json)
        else:
            scenario = _recorded(series or [], scenario_dir)
        summary = asyncio.run(_backtest(settings, scenario, as_json=as_json))
        unmatched = _unmatched_triggers(load_playbook_set(playbook_dir).playbooks, scenario)
    present = sorted({recorded.key.name for recorded in scenario.series})
    if not as_json:
        _print_unmatched(unmatched, present)
    if as_json:
        report = {
            **summary.counts(),
            "unmatched_triggers": unmatched,
            "series_present": present,
            "incidents_opened": [
                {
                    "id": i.id,
                    "series": str(i.series),
                    "opened_at": i.opened_at,
                    "signals": [str(signal.series) for signal in i.signals],
                }
                for i in summary.incidents.values()
            ],
            "actions_planned": [
                {
                    "incident": a.request.incident_id,
                    "playbook": a.request.playbook,
                    "action": a.request.action,
                    "status": a.status.value,
                    "detail": a.detail,
                }
                for a in summary.actions
            ],
        }
        sys.stdout.write(json.dumps(report) + "\n")


def _unmatched_triggers(playbooks: Sequence[Playbook], scenario: Scenario) -> list[dict[str, Any]]:
    """Each playbook trigger that no series of the replayed data satisfies: the backtest cannot have exercised it
    (a misspelt metric name or label, or a trigger on alerts, which recorded data does not hold)."""
    keys = [recorded.key for recorded in scenario.series]
    return [
        {
            "playbook": playbook.name,
            "trigger": index,
            "series": trigger.series,
            "labels": dict(trigger.labels),
            "matchers": [str(matcher) for matcher in trigger.matchers],
        }
        for playbook in playbooks
        for index, trigger in enumerate(playbook.triggers)
        if not any(trigger.matches_series(key) for key in keys)
    ]


def _print_unmatched(unmatched: Sequence[dict[str, Any]], present: Sequence[str]) -> None:
    if not unmatched:
        return
    console = Console(stderr=True)
    for trigger in unmatched:
        console.print(
            f"[yellow]playbook {trigger['playbook']}, trigger {trigger['trigger']}[/] "
            f"({_selector(trigger)}) matched no series "
            "in the data, so this backtest says nothing about it",
            soft_wrap=True,
            markup=True,
            highlight=False,
        )
    console.print(f"series in the data: {', '.join(present) or 'none'}", soft_wrap=True, highlight=False)


def _selector(trigger: dict[str, Any]) -> str:
    rules = [f"{label}={quote(value)}" for label, value in trigger["labels"].items()] + list(trigger["matchers"])
    return f"{trigger['series']}{{{', '.join(rules)}}}" if rules else str(trigger["series"])


def _from_kafka(bootstrap: str, topic: str, *, quiet: bool) -> Scenario:
    if not bootstrap:
        raise ConfigurationError("--kafka-topic needs --kafka-bootstrap or AIOPS_KAFKA_BOOTSTRAP")
    recorded = asyncio.run(read_topic(bootstrap, topic))
    if not quiet:
        Console(stderr=True).print(
            f"read {recorded.records} records from {topic} ({recorded.invalid_records} not valid, skipped)"
        )
    return recorded.scenario


def _recorded(series: list[str], scenario_dir: Path | None) -> Scenario:
    if scenario_dir is not None:
        return load_scenario(scenario_dir)
    if not series:
        raise ConfigurationError("give --series SELECTOR=FILE.csv (one or more) or --scenario DIR")
    recorded = []
    for item in series:
        selector, sep, file = item.rpartition("=")
        if not sep or not selector:
            raise ConfigurationError(f"--series {item!r}: expected SELECTOR=FILE.csv")
        try:
            key = SeriesKey.parse(selector)
        except ValueError as exc:
            raise ConfigurationError(f"--series {item!r}: {exc}") from exc
        timestamps, values = read_series_csv(Path(file))
        recorded.append(RecordedSeries(key, timestamps, values))
    step = float(min(np.median(np.diff(r.timestamps)) for r in recorded if len(r.timestamps) > 1))
    return Scenario("backtest", "recorded series", step, tuple(recorded), ())


async def _backtest(settings: Settings, scenario: Scenario, *, as_json: bool) -> RunSummary:
    console = Console(stderr=True, quiet=as_json)
    summary = RunSummary()
    view = ProgressView(console, summary)
    engine = await open_embedded(
        settings, clock=SystemClock(), speed=None, summary=summary, observers=[view], scenario=scenario
    )
    view.set_total(engine.source.total_samples)
    started = time.perf_counter()
    try:
        with view.progress:
            await engine.pipeline.run()
    finally:
        await engine.close()
    if not as_json:
        view.finish()
        print_summary(console, summary, scenario, time.perf_counter() - started, engine.desk.rules)
    return summary


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
