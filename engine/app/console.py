"""What a person at the terminal sees: a live progress bar while the replay runs and a summary at the end."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.app.summary import RunSummary
from engine.domain.events import ActionResult, Anomaly, IncidentChange, IncidentChangeKind, MetricSample
from engine.domain.scenario import Scenario


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%a %H:%M")


class ProgressView:
    """A pipeline observer that drives a rich progress bar and prints incidents as they open and resolve."""

    def __init__(self, console: Console, summary: RunSummary) -> None:
        self._summary = summary
        self.progress = Progress(
            TextColumn("[bold]replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("samples  {task.fields[counts]}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task = self.progress.add_task("replay", total=None, counts="")

    def set_total(self, total_samples: int) -> None:
        self.progress.update(self._task, total=total_samples)

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        counts = self._summary.counts()
        self.progress.update(
            self._task,
            advance=len(samples),
            counts=f"anomalies {counts['anomalies']}  incidents {counts['incidents']}  actions {counts['actions']}",
        )

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return

    def on_incident_change(self, change: IncidentChange) -> None:
        incident = change.incident
        if change.kind is IncidentChangeKind.OPENED:
            self.progress.console.print(
                f"[red]● opened[/] {_clock(change.at)}  {incident.severity.label:<8} {incident.series}"
            )
        elif change.kind is IncidentChangeKind.RESOLVED:
            self.progress.console.print(f"[green]✔ resolved[/] {_clock(change.at)}  {incident.series}")

    def on_action(self, result: ActionResult) -> None:
        self.progress.console.print(f"  [cyan]↳ {result.status.value}[/] {result.request.playbook}: {result.detail}")


def print_summary(console: Console, summary: RunSummary, scenario: Scenario, elapsed_s: float) -> None:
    counts = summary.counts()
    console.print(
        f"\n[bold]{scenario.name}[/]: {counts['samples']} samples in {elapsed_s:.1f} s, "
        f"{counts['anomalies']} anomalous points, {counts['incidents']} incidents, {counts['actions']} actions"
    )
    table = Table(title="Labelled episodes", show_lines=False)
    for column in ("episode", "series", "labelled", "incident opened", "delay", "actions"):
        table.add_column(column)
    for outcome in summary.episode_outcomes(scenario):
        episode = outcome.episode
        incident = outcome.incident
        actions = [a for a in summary.actions if incident is not None and a.request.incident_id == incident.id]
        table.add_row(
            episode.kind,
            str(episode.series),
            f"{_clock(episode.start)}-{_clock(episode.end)[-5:]}",
            _clock(incident.opened_at) if incident else "[red]missed[/]",
            f"{outcome.delay_s / 60:.0f} min" if outcome.delay_s is not None else "-",
            "\n".join(f"{a.status.value}: {a.detail}" for a in actions) or "-",
        )
    console.print(table)
    unexpected = summary.unexpected_incidents(scenario)
    colour = "green" if not unexpected else "yellow"
    console.print(f"[{colour}]incidents outside the labelled episodes: {len(unexpected)}[/]")
    for incident in unexpected:
        console.print(f"  {_clock(incident.opened_at)} {incident.series}")
