"""Counts what a run did and, for a replay, checks the incidents against the scenario's labelled problems: one
incident per problem, opened while it lasted, with its cause ranked first."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.probable_cause import Cause, rank_causes
from engine.domain.events import (
    ActionResult,
    ActionStatus,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    MetricSample,
)
from engine.domain.scenario import Episode, Scenario


@dataclass(frozen=True)
class EpisodeOutcome:
    """What the engine made of one labelled problem: the incidents that hold a signal of one of its series begun
    while it lasted (one, when correlation works), and the probable cause of the first."""

    episode: Episode
    incidents: tuple[Incident, ...]
    cause: Cause | None = None

    @property
    def incident(self) -> Incident | None:
        return self.incidents[0] if self.incidents else None

    @property
    def detected(self) -> bool:
        return bool(self.incidents)

    @property
    def delay_s(self) -> float | None:
        return None if not self.incidents else self.incidents[0].opened_at - self.episode.start

    @property
    def cause_right(self) -> bool | None:
        """Whether the cause ranked first is the problem's (None when it was not detected)."""
        return None if self.cause is None else self.cause.signal.series == self.episode.series


class RunSummary:
    """A pipeline observer that keeps the counts and the incidents and actions of one run."""

    def __init__(self) -> None:
        self.samples = 0
        self.anomalies = 0
        self.incidents: dict[str, Incident] = {}
        # The latest result per request: a verified step reports twice (verifying, then done or undone).
        self._actions: dict[str, ActionResult] = {}

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        self.samples += len(samples)

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        self.anomalies += len(anomalies)

    def on_incident_change(self, change: IncidentChange) -> None:
        if change.kind is IncidentChangeKind.OPENED or change.incident.id in self.incidents:
            self.incidents[change.incident.id] = change.incident

    def on_action(self, result: ActionResult) -> None:
        if result.status is not ActionStatus.DUPLICATE:
            self._actions[result.request.id] = result

    @property
    def actions(self) -> list[ActionResult]:
        return list(self._actions.values())

    @property
    def action_status(self) -> Counter[str]:
        return Counter(result.status.value for result in self._actions.values())

    def counts(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "anomalies": self.anomalies,
            "incidents": len(self.incidents),
            "actions": len(self._actions),
        }

    def episode_outcomes(self, scenario: Scenario, rules: CorrelationRules = NO_RULES) -> list[EpisodeOutcome]:
        """For each labelled problem, the incidents that hold a signal of its series begun while it lasted (in
        the order they opened) and the probable cause of the first, ranked by ``rules``."""
        outcomes = []
        for episode in scenario.episodes:
            matches = sorted((i for i in self.incidents.values() if _inside(i, episode)), key=lambda i: i.opened_at)
            causes = rank_causes(matches[0].signals, rules) if matches else []
            outcomes.append(EpisodeOutcome(episode, tuple(matches), causes[0] if causes else None))
        return outcomes

    def signal_count(self) -> int:
        """Signals (series with anomalies) of the run's incidents: what would have paged without correlation."""
        return sum(max(1, len(incident.signals)) for incident in self.incidents.values())

    def unexpected_incidents(self, scenario: Scenario) -> list[Incident]:
        """Incidents that no labelled episode explains: false alarms, as far as the labels can tell."""
        return [
            incident
            for incident in self.incidents.values()
            if not any(_inside(incident, episode) for episode in scenario.episodes)
        ]


def _inside(incident: Incident, episode: Episode) -> bool:
    affected = episode.affected
    if not incident.signals:
        return incident.series in affected and episode.start <= incident.opened_at <= episode.end
    return any(s.series in affected and episode.start <= s.first_at <= episode.end for s in incident.signals)
