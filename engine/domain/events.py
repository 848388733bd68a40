"""The frozen values that travel through the pipeline: samples, alerts, anomalies, incidents and actions.

Values are validated at the edge (HTTP, Kafka, YAML, files) and only these immutable objects travel inward.
Timestamps are epoch seconds (float, UTC).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Labels = tuple[tuple[str, str], ...]

_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*)\})?\s*$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def freeze_labels(labels: Mapping[str, str]) -> Labels:
    """Labels as a sorted tuple of pairs, so that equal label sets compare and hash equal."""
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """The identity of one metric series: a metric name and its label set."""

    name: str
    labels: Labels = ()

    @classmethod
    def of(cls, name: str, labels: Mapping[str, str] | None = None) -> SeriesKey:
        return cls(name, freeze_labels(labels or {}))

    @classmethod
    def parse(cls, text: str) -> SeriesKey:
        """``name{a="1",b="2"}`` (the form ``str`` gives) as a key; ValueError naming what is wrong."""
        found = _SELECTOR.match(text)
        if found is None:
            raise ValueError(f'invalid series {text!r}; expected name{{label="value",...}}')
        name, body = found.groups()
        labels: dict[str, str] = {}
        body = (body or "").strip()
        position = 0
        while position < len(body):
            label = _LABEL.match(body, position)
            if label is None:
                raise ValueError(f"invalid labels in {text!r} near {body[position:]!r}")
            labels[label.group(1)] = label.group(2).replace('\\"', '"')
            position = label.end()
        return cls.of(name, labels)

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        # The Prometheus exposition form, which SREs recognise: name{a="1",b="2"}.
        if not self.labels:
            return self.name
        inner = ",".join(f'{k}="{v}"' for k, v in self.labels)
        return f"{self.name}{{{inner}}}"


@dataclass(frozen=True, slots=True)
class MetricSample:
    """One observation of one series."""

    series: SeriesKey
    timestamp: float
    value: float


class Severity(enum.IntEnum):
    """How urgent a signal is; ordered so that triggers can ask for a minimum."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        return cls[text.upper()]

    @classmethod
    def of_alert_label(cls, text: str) -> Severity:
        """An alert's ``severity`` label; common ones that are not ours ("page", "error", "high") are as urgent as
        it gets, anything else unknown is a warning."""
        try:
            return cls.parse(text)
        except KeyError:
            return cls.CRITICAL if text.lower() in ("page", "error", "high") else cls.WARNING


class AlertStatus(enum.StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Alert:
    """An alert received from an external alerting system (Alertmanager)."""

    name: str
    fingerprint: str
    status: AlertStatus
    labels: Labels
    starts_at: float
    ends_at: float | None = None
    severity: Severity = Severity.WARNING
    annotations: Labels = ()


@dataclass(frozen=True, slots=True)
class Anomaly:
    """A point that a detector scored at or above its threshold."""

    series: SeriesKey
    timestamp: float
    value: float
    score: float
    detector: str
    severity: Severity


class IncidentState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Incident:
    """A problem the engine tracks: one or more signals grouped under one fingerprint."""

    id: str
    fingerprint: str
    title: str
    series: SeriesKey
    severity: Severity
    state: IncidentState
    opened_at: float
    last_signal_at: float
    signal_count: int
    peak_score: float
    resolved_at: float | None = None
    snoozed_until: float | None = None
    # When the incident entered its current state (ack timeouts and escalation delays count from here).
    state_since: float | None = None


class IncidentChangeKind(enum.StrEnum):
    OPENED = "opened"
    UPDATED = "updated"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class IncidentChange:
    """What happened to an incident, with the signal that caused it (None for time-driven changes)."""

    kind: IncidentChangeKind
    incident: Incident
    at: float
    signal: Anomaly | None = None
    # The external alert behind the change, for incidents opened by an alerting system.
    alert: Alert | None = None


class ActionMode(enum.StrEnum):
    LIVE = "live"
    DRY_RUN = "dry-run"
    SHADOW = "shadow"


@dataclass(frozen=True, slots=True)
class ActionRequest:
    """One playbook step to carry out for one incident.

    ``id`` is deterministic (incident, playbook, step), so a request replayed after a crash or a rebalance is
    recognised as the same request and carried out at most once.
    """

    id: str
    incident_id: str
    playbook: str
    step: int
    action: str
    params: Mapping[str, Any]
    mode: ActionMode
    requested_at: float
    # Seconds a human has to approve the step; None when the step needs no approval.
    approval_timeout_s: float | None = None
    # Why the step was planned: trigger, incident figures, conditions (recorded with the action).
    explanation: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def create(
        cls,
        *,
        id: str,
        incident_id: str,
        playbook: str,
        step: int,
        action: str,
        params: Mapping[str, Any],
        mode: ActionMode,
        requested_at: float,
        approval_timeout_s: float | None = None,
        explanation: Mapping[str, Any] | None = None,
    ) -> ActionRequest:
        return cls(
            id,
            incident_id,
            playbook,
            step,
            action,
            MappingProxyType(dict(params)),
            mode,
            requested_at,
            approval_timeout_s,
            MappingProxyType(dict(explanation or {})),
        )


class ActionStatus(enum.StrEnum):
    # Claimed: decided to run, not started yet.
    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting-approval"
    RUNNING = "running"
    VERIFYING = "verifying"
    DRY_RUN = "dry-run"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNDONE = "undone"
    REJECTED = "rejected"
    EXPIRED = "expired"
    # Not stored: what a caller is told when the request had already been claimed.
    DUPLICATE = "duplicate"


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The outcome of an action request; in dry-run, ``detail`` says exactly what would have been called."""

    request: ActionRequest
    status: ActionStatus
    detail: str
    finished_at: float
    effects: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
