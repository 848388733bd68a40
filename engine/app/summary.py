"""Counts what a run did and, for a replay, checks the incidents against the scenario's labelled episodes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
    episode: Episode
    incident: Incident | None

    @property
    def detected(self) -> bool:
        return self.incident is not None

    @property
    def delay_s(self) -> float | None:
        return None if self.incident is None else self.incident.opened_at - self.episode.start


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

    def episode_outcomes(self, scenario: Scenario) -> list[EpisodeOutcome]:
        """For each labelled episode, the first incident opened on its series while it lasted (or None)."""
        outcomes = []
        for episode in scenario.episodes:
            matches = sorted((i for i in self.incidents.values() if _inside(i, episode)), key=lambda i: i.opened_at)
            outcomes.append(EpisodeOutcome(episode, matches[0] if matches else None))
        return outcomes

    def unexpected_incidents(self, scenario: Scenario) -> list[Incident]:
        """Incidents that no labelled episode explains: false alarms, as far as the labels can tell."""
        return [
            incident
            for incident in self.incidents.values()
            if not any(_inside(incident, episode) for episode in scenario.episodes)
        ]


def _inside(incident: Incident, episode: Episode) -> bool:
    return incident.series == episode.series and episode.start <= incident.opened_at <= episode.end
