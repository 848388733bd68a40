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

# Prometheus' naming rules and its text exposition format, the form SREs recognise: name{a="1",b="2"}. Label values
# escape backslash, double quote and line feed (\\ \" \n), and nothing else, so that the text of a key is exact.
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# Blanks (spaces and tabs) are allowed around the parts, as Prometheus' parser allows them.
_HEAD = re.compile(r"[ \t]*([a-zA-Z_:][a-zA-Z0-9_:]*)[ \t]*")
# One label and what ends it (a comma or the closing brace); the value is a run of plain characters and escapes
# (an unrolled loop: linear time on any input). A raw line feed is not allowed inside a value.
_LABEL = re.compile(
    r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"([^"\\\n]*(?:\\.[^"\\\n]*)*)"[ \t]*([,}])[ \t]*',
    re.DOTALL,
)
_CLOSE = re.compile(r"[ \t]*\}[ \t]*")
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPED = {"\\": "\\", '"': '"', "n": "\n"}


def freeze_labels(labels: Mapping[str, str]) -> Labels:
    """Labels as a sorted tuple of pairs, so that equal label sets compare and hash equal."""
    return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


@dataclass(frozen=True, slots=True)
class SeriesKey:
    """The identity of one metric series: a metric name and its label set."""

    name: str
    labels: Labels = ()
    # Computed once: a key is hashed at each dict lookup on the path of every sample (detector slots, counter
    # states, caches), and hashing its label tuple each time was a tenth of OTLP decoding.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.name, self.labels)))

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[SeriesKey], tuple[str, Labels]]:
        # String hashes differ between processes: a copy or an unpickled key computes its own.
        return (SeriesKey, (self.name, self.labels))

    @classmethod
    def of(cls, name: str, labels: Mapping[str, str] | None = None) -> SeriesKey:
        return cls(name, freeze_labels(labels or {}))

    @classmethod
    def parse(cls, text: str) -> SeriesKey:
        """``name{a="1",b="2"}`` (the form ``str`` gives, Prometheus' text format) as a key; SeriesKeyError (a
        ValueError) saying what is wrong and where."""
        head = _HEAD.match(text)
        if head is None:
            raise SeriesKeyError(text, 0, SeriesKeyProblem.METRIC_NAME)
        name = head.group(1)
        position = head.end()
        if position == len(text):
            return cls(name)
        if text[position] != "{":
            raise SeriesKeyError(text, position, SeriesKeyProblem.TRAILING_TEXT)
        position += 1
        labels: dict[str, str] = {}
        # Prometheus allows an empty label set and a comma after the last label.
        close = _CLOSE.match(text, position)
        while close is None:
            label = _LABEL.match(text, position)
            if label is None:
                raise SeriesKeyError(text, position, SeriesKeyProblem.LABEL)
            key, value, end = label.groups()
            if key in labels:
                raise SeriesKeyError(text, label.start(1), SeriesKeyProblem.DUPLICATE_LABEL)
            labels[key] = _unescape(value, text, label.start(2)) if "\\" in value else value
            position = label.end()
            if end == "}":
                break
            close = _CLOSE.match(text, position)
        if close is not None:
            position = close.end()
        if position != len(text):
            raise SeriesKeyError(text, position, SeriesKeyProblem.TRAILING_TEXT)
        return cls(name, tuple(sorted(labels.items())))

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    def __str__(self) -> str:
        if not self.labels:
            return self.name
        inner = ",".join([f'{k}="{v}"' for k, v in self.labels])
        # Most values need no escape: checking the joined text once is cheaper than checking every value. Two
        # quotes per label means no value holds one.
        if "\\" in inner or "\n" in inner or inner.count('"') != 2 * len(self.labels):
            inner = ",".join([f'{k}="{_escape(v)}"' for k, v in self.labels])
        return f"{self.name}{{{inner}}}"


class SeriesKeyProblem(enum.StrEnum):
    """What is wrong with a series key's text."""

    METRIC_NAME = "expected a metric name, [a-zA-Z_:][a-zA-Z0-9_:]*"
    LABEL = 'expected label="value" (name [a-zA-Z_][a-zA-Z0-9_]*, no raw line feed) and then "," or "}"'
    ESCAPE = r"invalid escape: a value may only hold \\, \" and \n"
    DUPLICATE_LABEL = "a label given twice"
    TRAILING_TEXT = "unexpected text after the name or the label set"


class SeriesKeyError(ValueError):
    """A series key's text that is not ``name{label="value",...}``: the ``problem`` and the ``position`` (an index
    into ``text``) where it is."""

    def __init__(self, text: str, position: int, problem: SeriesKeyProblem) -> None:
        super().__init__(f"invalid series {text!r} at character {position}: {problem}")
        self.text = text
        self.position = position
        self.problem = problem


def is_metric_name(text: str) -> bool:
    """Whether ``text`` is a metric name by Prometheus' rules."""
    return _METRIC_NAME.fullmatch(text) is not None


def is_label_name(text: str) -> bool:
    """Whether ``text`` is a label name by Prometheus' rules."""
    return _LABEL_NAME.fullmatch(text) is not None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _unescape(value: str, text: str, start: int) -> str:
    """A label value as written between the quotes (``start`` is its index in ``text``), its escapes undone."""

    def unescaped(escape: re.Match[str]) -> str:
        char = _UNESCAPED.get(escape.group(1))
        if char is None:
            raise SeriesKeyError(text, start + escape.start(), SeriesKeyProblem.ESCAPE)
        return char

    return _ESCAPE.sub(unescaped, value)


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


@dataclass(frozen=True, slots=True)
class Signal:
    """One series' part in an incident: when it began, its strongest point, its latest, and whether it is over.

    An anomaly signal goes quiet when its series has been normal long enough; an alert signal (``alert`` True, its
    series ``ALERTS{...}``) when its resolved notification arrives. An incident stays open while any of its signals
    is not quiet."""

    series: SeriesKey
    first_at: float
    last_at: float
    peak_at: float
    peak_value: float
    peak_score: float
    count: int
    severity: Severity
    quiet_at: float | None = None
    alert: bool = False

    @property
    def active(self) -> bool:
        return self.quiet_at is None


class IncidentState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Incident:
    """A problem the engine tracks: one or more signals grouped under one fingerprint (one series, one alert, or
    the related series of one workload when correlation rules group them). ``series`` is the series whose signal
    opened it; ``signals`` holds each series' part (up to ``engine.core.incidents.MAX_SIGNALS`` of them: further
    series still count in ``signal_count``, ``last_signal_at``, ``peak_score`` and ``severity``)."""

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
    signals: tuple[Signal, ...] = ()

    def signal_of(self, series: SeriesKey) -> Signal | None:
        return next((signal for signal in self.signals if signal.series == series), None)


class IncidentChangeKind(enum.StrEnum):
    OPENED = "opened"
    # A signal of a series the incident did not hold yet joined it (a related series, by correlation rules).
    JOINED = "joined"
    UPDATED = "updated"
    # One of the incident's signals went quiet while others are still anomalous: the incident stays open.
    QUIETED = "quieted"
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
    # A verification failed and its step is being undone.
    UNDOING = "undoing"
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
