"""What a person at the terminal sees: a live progress bar while the replay runs and a summary at the end.

Lines about incidents and actions are rationed (``LINES_PER_SECOND``): a storm of alerts opens thousands of incidents
at once, and printing a line for each held the event loop, and with it the API and the webhook, for seconds. What
is held back is counted and said in one line; the page and the API have every incident.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from engine.app.summary import RunSummary
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.domain.events import ActionResult, Anomaly, IncidentChange, IncidentChangeKind, MetricSample
from engine.domain.scenario import Scenario


def _clock(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%a %H:%M")


LINES_PER_SECOND = 20
# Incidents outside the labelled episodes listed by name in the summary; the rest are counted.
LISTED_UNEXPECTED = 20


class LineRation:
    """At most ``per_second`` lines a second go out through ``emit``; the others are counted, and the count goes
    out as one line once the next second's lines may."""

    def __init__(
        self,
        emit: Callable[[str], None],
        per_second: int = LINES_PER_SECOND,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._emit = emit
        self._per_second = per_second
        self._clock = clock
        self._second_began = float("-inf")
        self._sent = 0
        self.held_back = 0

    def line(self, text: str) -> None:
        self.flush()
        if self._sent < self._per_second:
            self._sent += 1
            self._emit(text)
        else:
            self.held_back += 1

    def flush(self, *, final: bool = False) -> None:
        """Start a new second if the last one is over (or this is the ``final`` call), saying first how many lines
        it held back."""
        now = self._clock()
        if now - self._second_began < 1.0 and not final:
            return
        if self.held_back:
            self._emit(f"[dim]… {self.held_back} more lines not shown (the page and the API list every incident)[/]")
            self.held_back = 0
        self._second_began = now
        self._sent = 0


class ProgressView:
    """A pipeline observer that drives a rich progress bar and prints incidents as they open and resolve."""

    def __init__(self, console: Console, summary: RunSummary, *, clock: Callable[[], float] = time.monotonic) -> None:
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
        self._lines = LineRation(self.progress.console.print, clock=clock)

    def set_total(self, total_samples: int) -> None:
        self.progress.update(self._task, total=total_samples)

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self._lines.flush()
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
            self._lines.line(f"[red]● opened[/] {_clock(change.at)}  {incident.severity.label:<8} {incident.series}")
        elif change.kind is IncidentChangeKind.RESOLVED:
            self._lines.line(f"[green]✔ resolved[/] {_clock(change.at)}  {incident.series}")

    def on_action(self, result: ActionResult) -> None:
        self._lines.line(f"  [cyan]↳ {result.status.value}[/] {result.request.playbook}: {result.detail}")

    def finish(self) -> None:
        """Say how many lines the last second held back."""
        self._lines.flush(final=True)


def print_summary(
    console: Console, summary: RunSummary, scenario: Scenario, elapsed_s: float, rules: CorrelationRules = NO_RULES
) -> None:
    counts = summary.counts()
    console.print(
        f"\n[bold]{scenario.name}[/]: {counts['samples']} samples in {elapsed_s:.1f} s, "
        f"{counts['anomalies']} anomalous points, {counts['incidents']} incidents, {counts['actions']} actions"
    )
    table = Table(title="Labelled problems", show_lines=False)
    for column in ("problem", "cause", "labelled", "incident opened", "delay", "cause ranked first", "actions"):
        table.add_column(column)
    for outcome in summary.episode_outcomes(scenario, rules):
        episode = outcome.episode
        incident = outcome.incident
        actions = [a for a in summary.actions if incident is not None and a.request.incident_id == incident.id]
        opened = "[red]missed[/]" if incident is None else _clock(incident.opened_at)
        if len(outcome.incidents) > 1:
            opened += f" [yellow](+{len(outcome.incidents) - 1} more incidents)[/]"
        ranked = "-" if outcome.cause is None else str(outcome.cause.signal.series)
        if outcome.cause_right is False:
            ranked = f"[yellow]{ranked}[/]"
        table.add_row(
            episode.kind,
            str(episode.series),
            f"{_clock(episode.start)}-{_clock(episode.end)[-5:]}",
            opened,
            f"{outcome.delay_s / 60:.0f} min" if outcome.delay_s is not None else "-",
            ranked,
            "\n".join(f"{a.status.value}: {a.detail}" for a in actions) or "-",
        )
    console.print(table)
    unexpected = summary.unexpected_incidents(scenario)
    colour = "green" if not unexpected else "yellow"
    console.print(f"[{colour}]incidents outside the labelled episodes: {len(unexpected)}[/]")
    for incident in unexpected[:LISTED_UNEXPECTED]:
        console.print(f"  {_clock(incident.opened_at)} {incident.series}")
    if len(unexpected) > LISTED_UNEXPECTED:
        console.print(f"  … and {len(unexpected) - LISTED_UNEXPECTED} more")
