"""What the core needs from the edges: where incidents and actions are recorded, and who watches the pipeline.

Adapters implement these protocols (SQL store, Prometheus metrics, the console); the core only sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from engine.domain.events import (
    ActionRequest,
    ActionResult,
    ActionStatus,
    Anomaly,
    Incident,
    IncidentChange,
    IncidentState,
    MetricSample,
)


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


class IncidentStore(Protocol):
    async def apply_changes(self, changes: Sequence[IncidentChange]) -> None:
        """Persist the incidents' new states and append the changes to their timelines, in order and all or
        nothing."""


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
    ) -> Incident: ...

    async def annotate_incident(
        self, incident_id: str, *, kind: str, by: str, comment: str, at: float, snoozed_until: float | None = None
    ) -> Incident: ...


class ActionLedger(Protocol):
    async def claim(self, request: ActionRequest) -> bool:
        """Record that ``request`` is about to run; False if a request with the same id was already claimed."""

    async def complete(self, result: ActionResult) -> None:
        """Record the outcome (or the new state) of a claimed request."""

    async def transition(
        self, request_id: str, expected: ActionStatus, new: ActionStatus, detail: str, by: str
    ) -> bool:
        """Move a request from ``expected`` to ``new`` atomically; False if it was not in ``expected`` state."""

    async def load(self, request_id: str) -> ActionRequest | None:
        """The request as it was claimed, or None."""

    async def awaiting_approval(self, due_before: float) -> list[ActionRequest]:
        """Requests still waiting for a human whose approval window ended before ``due_before``."""

    async def unfinished(self) -> list[tuple[ActionRequest, ActionStatus]]:
        """Requests left PENDING or RUNNING, e.g. by a crash: what ``ActionExecutor.recover`` reconciles."""


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
