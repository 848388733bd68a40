"""Per-series state of the stateful stages, so that a partitioned source can hand series between engine processes.

A series' state is what detection learned about it (its detector slot and threshold cooldown) and what the
incident stage keeps about it (its live incident and the signals still waiting to open one). A source that owns
series by partition (Kafka) captures this state at batch boundaries, keeps it in a ``CheckpointStore`` with the
partition position it corresponds to, restores it when a partition is assigned to this process, and forgets it
when the partition moves away. Documents are plain JSON-compatible values, so any store can keep them; each names
its series (metric name and labels as they are), so a store gives back exactly the key it was given.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from engine.core.detection import DetectionService, DetectorSlotState
from engine.core.incidents import IncidentManager
from engine.domain.events import Anomaly, Incident, IncidentState, SeriesKey, Severity, Signal
from engine.domain.signal_documents import signal_documents, signals_of_documents

# Bumped when the document layout changes; older documents are then ignored (the series starts afresh).
_FORMAT = 1


@dataclass(frozen=True)
class SeriesState:
    """Everything the pipeline keeps about one series, as of the end of one batch."""

    detection: DetectorSlotState
    incident: Incident | None = None
    pending: tuple[Anomaly, ...] = ()

    def document(self, series: SeriesKey) -> dict[str, Any]:
        """This state of ``series`` as a document that names the series."""
        return {
            "format": _FORMAT,
            "series": {"name": series.name, "labels": series.label_map},
            "detector": self.detection.detector,
            "threshold": self.detection.threshold,
            "incident": None if self.incident is None else _incident_document(self.incident),
            "pending": [_anomaly_document(a) for a in self.pending],
        }

    @classmethod
    def from_document(cls, series: SeriesKey, document: Mapping[str, Any]) -> SeriesState | None:
        """The state a ``document`` describes, or None for a document of another format."""
        if document.get("format") != _FORMAT:
            return None
        incident = document["incident"]
        return cls(
            DetectorSlotState(dict(document["detector"]), dict(document["threshold"])),
            None if incident is None else _incident_of(series, incident),
            tuple(_anomaly_of(series, a) for a in document["pending"]),
        )


def document_series(document: Mapping[str, Any]) -> SeriesKey | None:
    """The series a state document names; None for a document written before documents named their series."""
    series = document.get("series")
    if series is None:
        return None
    return SeriesKey.of(series["name"], series["labels"])


@dataclass(frozen=True)
class PartitionCheckpoint:
    """A partition's position (the next offset to read) and the state of its series as of that position."""

    topic: str
    partition: int
    offset: int
    states: Mapping[SeriesKey, SeriesState]


class CheckpointStore(Protocol):
    """Where partition checkpoints are kept, per consumer group."""

    async def save_checkpoints(self, group: str, checkpoints: Sequence[PartitionCheckpoint]) -> None:
        """Keep every checkpoint in one transaction: a partition's position and the states given with it (series
        not given keep their earlier state). A checkpoint behind the position already kept is ignored, so a
        member that lost its partition cannot move it back."""

    async def load_checkpoints(self, group: str, partitions: Collection[tuple[str, int]]) -> list[PartitionCheckpoint]:
        """The kept position and every series state of each of ``partitions`` (topic, partition) that has one."""


class SeriesStates:
    """Captures, restores and forgets the per-series state of detection and incidents."""

    def __init__(self, detection: DetectionService, incidents: IncidentManager) -> None:
        self._detection = detection
        self._incidents = incidents

    def capture_detection(self, series: Iterable[SeriesKey]) -> dict[SeriesKey, DetectorSlotState]:
        """Detection's part, taken when detection has just finished a batch (or has nothing newer in hand)."""
        return self._detection.capture(series)

    def capture(self, detection: Mapping[SeriesKey, DetectorSlotState]) -> dict[SeriesKey, SeriesState]:
        """The whole state: ``detection`` (captured earlier, at the same batch boundary) completed with the incident
        stage's part, taken when that stage has just finished the same batch."""
        states = {}
        for series, detected in detection.items():
            incident, pending = self._incidents.series_state(series)
            states[series] = SeriesState(detected, incident, pending)
        return states

    def restore(self, states: Mapping[SeriesKey, SeriesState]) -> None:
        self._detection.restore({series: state.detection for series, state in states.items()})
        for series, state in states.items():
            self._incidents.restore_series(series, state.incident, state.pending)

    def forget(self, series: Collection[SeriesKey]) -> None:
        self._detection.forget(series)
        for key in series:
            self._incidents.forget_series(key)


def _anomaly_document(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "timestamp": anomaly.timestamp,
        "value": anomaly.value,
        "score": anomaly.score,
        "detector": anomaly.detector,
        "severity": int(anomaly.severity),
    }


def _anomaly_of(series: SeriesKey, document: Mapping[str, Any]) -> Anomaly:
    return Anomaly(
        series,
        float(document["timestamp"]),
        float(document["value"]),
        float(document["score"]),
        str(document["detector"]),
        Severity(document["severity"]),
    )


def _incident_document(incident: Incident) -> dict[str, Any]:
    return {
        "id": incident.id,
        "fingerprint": incident.fingerprint,
        "title": incident.title,
        "severity": int(incident.severity),
        "state": incident.state.value,
        "opened_at": incident.opened_at,
        "last_signal_at": incident.last_signal_at,
        "signal_count": incident.signal_count,
        "peak_score": incident.peak_score,
        "resolved_at": incident.resolved_at,
        "snoozed_until": incident.snoozed_until,
        "state_since": incident.state_since,
        # The series whose signal opened it: another series of its group, perhaps.
        "series": str(incident.series),
        "signals": signal_documents(incident.signals),
    }


def _incident_of(series: SeriesKey, document: Mapping[str, Any]) -> Incident:
    """The incident of a checkpoint; one saved before incidents held signals gets the one signal it stood for."""
    opened_by = document.get("series")
    signals = signals_of_documents(document.get("signals"))
    if "signals" not in document:
        signals = (
            Signal(
                series=series,
                first_at=float(document["opened_at"]),
                last_at=float(document["last_signal_at"]),
                peak_at=float(document["last_signal_at"]),
                peak_value=0.0,
                peak_score=float(document["peak_score"]),
                count=int(document["signal_count"]),
                severity=Severity(document["severity"]),
            ),
        )
    return Incident(
        id=str(document["id"]),
        fingerprint=str(document["fingerprint"]),
        title=str(document["title"]),
        series=series if opened_by is None else SeriesKey.parse(str(opened_by)),
        severity=Severity(document["severity"]),
        state=IncidentState(document["state"]),
        opened_at=float(document["opened_at"]),
        last_signal_at=float(document["last_signal_at"]),
        signal_count=int(document["signal_count"]),
        peak_score=float(document["peak_score"]),
        resolved_at=document["resolved_at"],
        snoozed_until=document["snoozed_until"],
        state_since=document["state_since"],
        signals=signals,
    )
