"""What the core needs from the edges: where incidents are recorded, and who watches the pipeline (the action
ledger's port is ``engine.core.actions.ledger``).

Adapters implement these protocols (SQL store, Prometheus metrics, the console); the core only sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Sequence
from typing import TYPE_CHECKING, Protocol

from engine.domain.events import (
    ActionResult,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentState,
    MetricSample,
    SeriesKey,
)

if TYPE_CHECKING:
    from engine.core.playbooks.steps import PlannedStep
    from engine.core.signal_points import SignalPoint


class SampleSource(Protocol):
    """Produces batches of samples, each batch in time order per series."""

    def batches(self) -> AsyncIterator[Sequence[MetricSample]]: ...


class BatchAcknowledger(Protocol):
    """Told about each batch, in batch order, twice: when the incident stage has worked out the batch's changes (its
    state is then exactly as of the batch's end, though the changes are not stored yet), and when those changes are
    stored and its events handed to the observers: a source that must not forget input before then (Kafka offsets)
    commits its position there."""

    def processed(self, batch: Sequence[MetricSample]) -> None: ...

    async def acknowledge(self, batch: Sequence[MetricSample]) -> None: ...


class StreamClock(Protocol):
    """A source read by parts at different paces (Kafka: partitions, taken over with a backlog by another process):
    how far in event time the part of each series had been read at the end of a batch, so that an incident is not
    resolved as quiet while signals of its series are still unread. None for a series whose part holds nothing
    unread (or that the source does not place): the watermark of the whole input applies to it."""

    def stream_clock(self, batch: Sequence[MetricSample]) -> Callable[[SeriesKey], float | None]: ...


# Works out the steps that stored incident changes call for (the playbooks and the pager): called by the store
# inside the transaction that stores the changes, so that steps follow the incidents as the store decided them.
Planning = Callable[[Sequence[IncidentChange]], "list[PlannedStep]"]


class IncidentStore(Protocol):
    async def apply_changes(
        self, changes: Sequence[IncidentChange], planned: Sequence[PlannedStep] = (), *, plan: Planning | None = None
    ) -> list[IncidentChange]:
        """Take a process' incident changes in (``engine.core.incident_merge``: its openings may join a group's
        incident another replica opened, replays change nothing, a resolution waits for every signal), persist
        the incidents' new states, append the changes to their timelines and put the steps they call for
        (``planned``, and those ``plan`` gives for the changes as stored) in the action ledger (see
        ``ActionLedger.plan``), in order and all or nothing. Returns the changes as stored."""

    async def resolved_among(self, incident_ids: Collection[str]) -> set[str]:
        """Which of these incidents are resolved in the store (a person may have resolved them on any replica)."""

    async def add_signal_points(self, points: Sequence[SignalPoint]) -> None:
        """Keep samples of incidents' signals (``engine.core.signal_points``); one already kept is not added twice."""


class IncidentDecisions(Protocol):
    """Where people's decisions on incidents are made durable (atomically: of two at once, one wins)."""

    async def decide_incident(
        self,
        incident_id: str,
        *,
        allowed_from: frozenset[IncidentState],
        to: IncidentState,
        kind: str,
        by: str,
        comment: str,
        at: float,
        planned: Sequence[PlannedStep] = (),
    ) -> Incident:
        """Move the incident from one of ``allowed_from`` to ``to`` (ConflictError if it is in none of them, as
        when another decision won) and store the steps the decision calls for, all or nothing."""

    async def annotate_incident(
        self, incident_id: str, *, kind: str, by: str, comment: str, at: float, snoozed_until: float | None = None
    ) -> Incident: ...

    async def resolved_among(self, incident_ids: Collection[str]) -> set[str]:
        """Which of these incidents are resolved (a step of one may no longer be approved)."""


class PipelineObserver(Protocol):
    """Told about everything the pipeline does; used for metrics, progress and summaries."""

    def on_samples(self, samples: Sequence[MetricSample]) -> None: ...

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        """Detection scored ``samples`` (one batch) in ``seconds`` of wall-clock time."""

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None: ...

    def on_incident_change(self, change: IncidentChange) -> None: ...

    def on_action(self, result: ActionResult) -> None: ...


class FanOutObserver:
    """Passes every notification on to several observers, in order."""

    def __init__(self, *observers: PipelineObserver) -> None:
        self._observers = observers

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        for observer in self._observers:
            observer.on_samples(samples)

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        for observer in self._observers:
            observer.on_detection(samples, seconds)

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        for observer in self._observers:
            observer.on_anomalies(anomalies)

    def on_incident_change(self, change: IncidentChange) -> None:
        for observer in self._observers:
            observer.on_incident_change(change)

    def on_action(self, result: ActionResult) -> None:
        for observer in self._observers:
            observer.on_action(result)
