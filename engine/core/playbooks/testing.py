"""Unit tests for playbooks, in the spirit of ``promtool test rules``.

A test gives input series on a time axis (promtool's expanding notation: ``0.1x30 0.5x10`` is 31 times 0.1,
then 11 times 0.5; ``1+1x3`` is 1 2 3 4; ``_`` is a missing point), says when a point is anomalous (a condition
over ``value``, so tests do not depend on a learning detector's warm-up), and lists the steps it expects, in
order, with their final status and, for skipped steps, the guard that stopped them. The test runs the real
pipeline (incidents, planner, guards, executor, verification) in dry-run on event time.

A test can also feed Alertmanager alerts (``alerts:``), alone (then ``anomaly`` is not needed) or next to series.
Each alert has ``labels`` (with ``alertname``; a ``severity`` label sets the incident's severity as the webhook
does), optional ``annotations`` (``summary`` becomes the incident's title), ``starts_at`` (when it starts firing)
and optional ``ends_at`` (when it is resolved; left out, it is still firing when the test ends), both durations
from the test's start such as ``0s``, ``90s`` or ``5m``. ``repeat`` re-sends the firing notification at that
interval while the alert fires, like Alertmanager's ``repeat_interval``. For example::

    alerts:
      - labels: {alertname: ModelDown, namespace: serving, severity: critical}
        starts_at: 2m
        ends_at: 10m
        repeat: 1m

Alerts enter through the pipeline's alert feed, as the webhook's do: a firing notification at ``starts_at`` (and
at each repeat), a resolved one at ``ends_at``. Alerts with the same labels are the same alert (one fingerprint),
so one listed again with the same ``starts_at`` is a repeated notification and changes nothing, and one with a
later ``starts_at`` fires again once the earlier episode is resolved. Notifications due at the time of a series
point are delivered after that point.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from detectors.base import BatchDetector, FloatArray, IntArray, State
from engine.core.actions.executor import ActionExecutor
from engine.core.alert_feed import AlertFeed
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.memory import InMemoryStore
from engine.core.pipeline import Pipeline
from engine.core.playbooks.expressions import Duration, compile_condition, evaluate_condition
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import FakeClock
from engine.domain.events import (
    ActionMode,
    ActionResult,
    ActionStatus,
    Alert,
    AlertStatus,
    Anomaly,
    IncidentChange,
    MetricSample,
    SeriesKey,
    Severity,
    freeze_labels,
)

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_VALUES = re.compile(r"^(_|[-+]?\d*\.?\d+(?:e[-+]?\d+)?)(?:([-+]\d*\.?\d+(?:e[-+]?\d+)?)?x(\d+))?$")
# Points of one input series, and notifications of one alert, a test may produce: far more than a test needs,
# few enough that a typo (0.1x10000000000) is an error rather than an engine that runs out of memory.
MAX_POINTS = 100_000
_ALLOWED_STATUSES = ", ".join(status.value for status in ActionStatus)


def expand_values(text: str) -> list[float]:
    """promtool's notation: ``a``, ``axn`` (n+1 times a), ``a+bxn`` / ``a-bxn`` (a, a+b, ... n+1 values), ``_``."""
    values: list[float] = []
    for token in text.split():
        found = _VALUES.match(token)
        if found is None:
            raise ValueError(f"invalid value {token!r}; use e.g. 0.1, 0.1x30, 1+1x3 or _")
        start, step, count = found.groups()
        times = int(count) + 1 if count else 1
        if len(values) + times > MAX_POINTS:
            raise ValueError(f"a series may hold at most {MAX_POINTS} points")
        if start == "_":
            values += [math.nan] * times
            continue
        first, increment = float(start), float(step) if step else 0.0
        values += [first + increment * i for i in range(times)]
    return values


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSeries(_Strict):
    series: str
    values: str

    @field_validator("series")
    @classmethod
    def _selector(cls, series: str) -> str:
        SeriesKey.parse(series)
        return series

    @field_validator("values")
    @classmethod
    def _values(cls, values: str) -> str:
        expand_values(values)
        return values


class InputAlert(_Strict):
    """One Alertmanager alert: ``starts_at`` and ``ends_at`` are durations from the test's start."""

    labels: dict[str, str] = Field(description="the alert's labels; alertname is required, severity is optional")
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: Duration = Field(description="when the alert starts firing, e.g. 0s or 5m from the test's start")
    ends_at: Duration | None = Field(default=None, description="when it is resolved; unset: still firing at the end")
    repeat: Duration | None = Field(
        default=None, description="re-send the firing notification this often while it fires (repeat_interval)"
    )

    @model_validator(mode="before")
    @classmethod
    def _not_a_range(cls, data: object) -> object:
        # Authors who know promtool may reach for a range; point them at the notation used here.
        if isinstance(data, dict) and "firing" in data:
            raise ValueError(
                "give the firing time as starts_at and ends_at, durations from the test's start "
                "(e.g. starts_at: 0s, ends_at: 5m; leave ends_at out for an alert still firing), not 'firing'"
            )
        return data

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        if not labels.get("alertname"):
            raise ValueError("an alert needs an alertname label, e.g. labels: {alertname: ModelDown}")
        bad = sorted(name for name in labels if not _LABEL_NAME.match(name))
        if bad:
            raise ValueError(f"invalid label name(s) {bad}; use letters, digits and _")
        return labels

    @field_validator("repeat")
    @classmethod
    def _repeat(cls, repeat: float | None) -> float | None:
        if repeat is not None and repeat <= 0:
            raise ValueError("repeat must be a positive duration, e.g. 1m")
        return repeat

    @model_validator(mode="after")
    def _ends_after_start(self) -> InputAlert:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError(
                f"ends_at ({self.ends_at:g}s) must be after starts_at ({self.starts_at:g}s); both are durations "
                "from the test's start, e.g. starts_at: 1m, ends_at: 5m; leave ends_at out for a still firing alert"
            )
        sends = (self.ends_at - self.starts_at) / self.repeat if self.ends_at is not None and self.repeat else 0.0
        if sends > MAX_POINTS:
            raise ValueError(f"repeated every {self.repeat:g}s the alert sends more than {MAX_POINTS} notifications")
        return self

    @property
    def fingerprint(self) -> str:
        # Alertmanager's fingerprint is a hash of the label set: the same labels are the same alert.
        return hashlib.sha256(repr(freeze_labels(self.labels)).encode()).hexdigest()[:16]

    def notifications(self, origin: float, end: float) -> list[tuple[float, Alert]]:
        """(delivery time, notification) on the test's time axis: the firing one, its repeats while the alert
        fires (until ``end``, the test's last moment, if it is never resolved) and the resolved one."""
        starts_at = origin + self.starts_at
        ends_at = origin + self.ends_at if self.ends_at is not None else None
        firing = Alert(
            name=self.labels["alertname"],
            fingerprint=self.fingerprint,
            status=AlertStatus.FIRING,
            labels=freeze_labels(self.labels),
            starts_at=starts_at,
            severity=Severity.of_alert_label(self.labels.get("severity", "")),
            annotations=freeze_labels(self.annotations),
        )
        sent = [(starts_at, firing)]
        if self.repeat is not None:
            # A resolved alert is not repeated at its resolution; a still firing one is, up to the test's end.
            stop = ends_at if ends_at is not None else math.nextafter(end, math.inf)
            if (stop - starts_at) / self.repeat > MAX_POINTS:
                raise ValueError(f"an alert repeated every {self.repeat:g}s sends more than {MAX_POINTS} notifications")
            at = starts_at + self.repeat
            while at < stop:
                sent.append((at, firing))
                at += self.repeat
        if ends_at is not None:
            sent.append((ends_at, replace(firing, status=AlertStatus.RESOLVED, ends_at=ends_at)))
        return sent


class Expectation(_Strict):
    playbook: str
    action: str | None = None
    status: ActionStatus = Field(description=f"the step's final status: one of {_ALLOWED_STATUSES}")
    guard: str | None = Field(default=None, description="for skipped steps: the guard that stopped them")


class PlaybookTest(_Strict):
    name: str
    interval: Duration = 60.0
    start: AwareDatetime | None = None
    anomaly: str | None = Field(default=None, description="when a point counts as anomalous, e.g. value > 0.5")
    series: list[InputSeries] = Field(default_factory=list)
    alerts: list[InputAlert] = Field(default_factory=list, description="Alertmanager alerts fed to the pipeline")
    min_signals: int = Field(default=1, ge=1)
    resolve_after: Duration = 900.0
    expect: list[Expectation] = Field(default_factory=list)

    @field_validator("anomaly")
    @classmethod
    def _condition(cls, anomaly: str | None) -> str | None:
        if anomaly is not None:
            compile_condition(anomaly)
        return anomaly

    @model_validator(mode="after")
    def _has_input(self) -> PlaybookTest:
        if not self.series and not self.alerts:
            raise ValueError("a test needs input: series (with anomaly), alerts, or both")
        if self.series and self.anomaly is None:
            raise ValueError("series need an anomaly condition, e.g. anomaly: value > 0.5")
        return self


class PlaybookTestFile(_Strict):
    tests: list[PlaybookTest] = Field(min_length=1)


@dataclass(frozen=True)
class Observed:
    playbook: str
    action: str
    status: str
    guard: str | None
    detail: str

    def matches(self, expected: Expectation) -> bool:
        return (
            self.playbook == expected.playbook
            and (expected.action is None or self.action == expected.action)
            and self.status == expected.status
            and (expected.guard is None or self.guard == expected.guard)
        )

    def __str__(self) -> str:
        guard = f" [{self.guard}]" if self.guard else ""
        return f"{self.playbook} {self.action} -> {self.status}{guard}: {self.detail}"


@dataclass(frozen=True)
class TestOutcome:
    name: str
    observed: tuple[Observed, ...]
    expected: tuple[Expectation, ...]
    # What happened to incidents, in order: for reports and for tests of the harness itself.
    incident_changes: tuple[IncidentChange, ...] = ()
    # Why the test could not run to its end (a template or condition that failed, say): it then fails.
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (
            self.error is None
            and len(self.observed) == len(self.expected)
            and all(o.matches(e) for o, e in zip(self.observed, self.expected, strict=True))
        )


class _ConditionDetector(BatchDetector):
    """Scores 1 where the test's anomaly condition holds: deterministic input for playbook tests."""

    def __init__(self, condition: str | None, capacity: int) -> None:
        self._condition = condition
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    def ensure_capacity(self, capacity: int) -> None:
        self._capacity = max(self._capacity, capacity)

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        if self._condition is None:
            return np.zeros(len(values))
        return np.array(
            [0.0 if math.isnan(v) else float(evaluate_condition(self._condition, {"value": v})) for v in values]
        )

    def reset_slot(self, slot: int) -> None:
        return

    def snapshot_slot(self, slot: int) -> State:
        return {}

    def restore_slot(self, slot: int, state: State) -> None:
        return


class _PacedIncidents(IncidentManager):
    """The real incident manager, telling the test's source how far the incident stage has got."""

    def __init__(self, policy: IncidentPolicy, rules: CorrelationRules = NO_RULES) -> None:
        super().__init__(policy, rules)
        self.watermark = -math.inf
        self.alerts_seen = 0
        self._progress = asyncio.Event()

    def observe_alert(self, alert: Alert) -> list[IncidentChange]:
        self.alerts_seen += 1
        self._progress.set()
        return super().observe_alert(alert)

    def advance(
        self, now: float, stream_time: Callable[[SeriesKey], float | None] | None = None
    ) -> list[IncidentChange]:
        self.watermark = max(self.watermark, now)
        self._progress.set()
        return super().advance(now, stream_time)

    async def reached(self, *, watermark: float, alerts: int) -> None:
        while self.watermark < watermark or self.alerts_seen < alerts:
            self._progress.clear()
            await self._progress.wait()


class _Timeline:
    """The test's samples and alert notifications in event-time order (samples first at equal times).

    Samples and alerts take different ways into the pipeline (the source and the alert feed), so each is let
    through only once the incident stage has taken everything before it: the order a test states is the order
    incidents see, as it would be in production with signals minutes apart.
    """

    def __init__(
        self,
        batches: Sequence[Sequence[MetricSample]],
        notifications: Sequence[tuple[float, Alert]],
        feed: AlertFeed,
        incidents: _PacedIncidents,
    ) -> None:
        self._batches = batches
        self._notifications = sorted(notifications, key=lambda sent: sent[0])
        self._feed = feed
        self._incidents = incidents
        self._submitted = 0

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        waiting = list(self._notifications)
        for batch in self._batches:
            at = batch[0].timestamp
            while waiting and waiting[0][0] < at:
                waiting = await self._deliver(waiting)
            yield batch
            await self._incidents.reached(watermark=at, alerts=self._submitted)
        while waiting:
            waiting = await self._deliver(waiting)

    async def _deliver(self, waiting: list[tuple[float, Alert]]) -> list[tuple[float, Alert]]:
        """Send the notifications due at the first waiting time as one batch; returns the rest."""
        due = [alert for at, alert in waiting if at == waiting[0][0]]
        await self._feed.submit(due)
        self._submitted += len(due)
        await self._incidents.reached(watermark=-math.inf, alerts=self._submitted)
        return waiting[len(due) :]


class _Recorder:
    def __init__(self) -> None:
        self.results: dict[str, ActionResult] = {}
        self.changes: list[IncidentChange] = []

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        return

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return

    def on_incident_change(self, change: IncidentChange) -> None:
        self.changes.append(change)

    def on_action(self, result: ActionResult) -> None:
        # Insertion order is the order steps were first decided; later results (verification) update in place.
        self.results[result.request.id] = result


def _origin(test: PlaybookTest) -> float:
    return test.start.timestamp() if test.start is not None else 0.0


def _batches(test: PlaybookTest) -> list[list[MetricSample]]:
    origin = _origin(test)
    streams = [(SeriesKey.parse(s.series), expand_values(s.values)) for s in test.series]
    length = max((len(values) for _, values in streams), default=0)
    return [
        [MetricSample(key, origin + i * test.interval, values[i]) for key, values in streams if i < len(values)]
        for i in range(length)
    ]


def _notifications(test: PlaybookTest, batches: Sequence[Sequence[MetricSample]]) -> list[tuple[float, Alert]]:
    origin = _origin(test)
    # The test ends at its last sample or its last alert start or end, whichever is later.
    end = max(
        [batch[0].timestamp for batch in batches[-1:]]
        + [
            origin + moment
            for alert in test.alerts
            for moment in (alert.starts_at, alert.ends_at)
            if moment is not None
        ]
    )
    return [sent for alert in test.alerts for sent in alert.notifications(origin, end)]


async def run_test(
    test: PlaybookTest, playbooks: Sequence[Playbook], policy: Policy, rules: CorrelationRules = NO_RULES
) -> TestOutcome:
    recorder = _Recorder()
    clock = FakeClock()
    feed = AlertFeed()
    incidents = _PacedIncidents(
        IncidentPolicy(
            min_signals=test.min_signals, open_window_s=10 * test.interval, resolve_after_s=test.resolve_after
        ),
        # The test's resolve_after says when its incidents end, grouped by the directory's rules or not.
        rules.model_copy(update={"window": test.resolve_after}),
    )
    error = None
    store = InMemoryStore()
    try:
        batches = _batches(test)
        pipeline = Pipeline(
            source=_Timeline(batches, _notifications(test, batches), feed, incidents),
            detection=DetectionService(
                DetectionPolicy(detector="test-condition"), _ConditionDetector(test.anomaly, 16), threshold=0.5
            ),
            incidents=incidents,
            remediator=Remediator(
                Planner(playbooks, ActionMode.DRY_RUN, rules),
                ActionExecutor(store, clock, {}, owner="playbook-test"),
                store,
                policy,
            ),
            store=store,
            observer=recorder,
            alerts=feed if test.alerts else None,
        )
        await pipeline.run()
    except Exception as exc:  # Whatever the playbooks under test raise fails this test, not the whole run.
        error = f"{type(exc).__name__}: {str(exc)[:500]}"
    observed = tuple(
        Observed(r.request.playbook, r.request.action, r.status.value, r.effects.get("guard"), r.detail)
        for r in recorder.results.values()
    )
    return TestOutcome(test.name, observed, tuple(test.expect), tuple(recorder.changes), error)


def describe_failure(outcome: TestOutcome) -> list[str]:
    lines = [f"  stopped by an error: {outcome.error}"] if outcome.error is not None else []
    lines.append(f"  expected {len(outcome.expected)} step(s):")
    lines += [
        f"    {e.playbook} {e.action or '*'} -> {e.status}" + (f" [{e.guard}]" if e.guard else "")
        for e in outcome.expected
    ]
    lines.append(f"  observed {len(outcome.observed)} step(s):")
    lines += [f"    {o}" for o in outcome.observed]
    return lines
