"""Unit tests for playbooks, in the spirit of ``promtool test rules``.

A test gives input series on a time axis (promtool's expanding notation: ``0.1x30 0.5x10`` is 31 times 0.1,
then 11 times 0.5; ``1+1x3`` is 1 2 3 4; ``_`` is a missing point), says when a point is anomalous (a condition
over ``value``, so tests do not depend on a learning detector's warm-up), and lists the steps it expects, in
order, with their final status and, for skipped steps, the guard that stopped them. The test runs the real
pipeline (incidents, planner, guards, executor, verification) in dry-run on event time.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from detectors.base import BatchDetector, FloatArray, IntArray, State
from engine.core.actions.executor import ActionExecutor
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.memory import InMemoryIncidentStore, InMemoryLedger
from engine.core.pipeline import Pipeline
from engine.core.playbooks.expressions import Duration, compile_condition, evaluate_condition
from engine.core.playbooks.guards import Policy, RunHistory
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import FakeClock
from engine.domain.events import (
    ActionMode,
    ActionResult,
    Anomaly,
    IncidentChange,
    MetricSample,
    SeriesKey,
)

_VALUES = re.compile(r"^(_|[-+]?\d*\.?\d+(?:e[-+]?\d+)?)(?:([-+]\d*\.?\d+(?:e[-+]?\d+)?)?x(\d+))?$")


def expand_values(text: str) -> list[float]:
    """promtool's notation: ``a``, ``axn`` (n+1 times a), ``a+bxn`` / ``a-bxn`` (a, a+b, ... n+1 values), ``_``."""
    values: list[float] = []
    for token in text.split():
        found = _VALUES.match(token)
        if found is None:
            raise ValueError(f"invalid value {token!r}; use e.g. 0.1, 0.1x30, 1+1x3 or _")
        start, step, count = found.groups()
        if start == "_":
            values += [math.nan] * (int(count) + 1 if count else 1)
            continue
        first, increment = float(start), float(step) if step else 0.0
        values += [first + increment * i for i in range(int(count) + 1 if count else 1)]
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


class Expectation(_Strict):
    playbook: str
    action: str | None = None
    status: str
    guard: str | None = Field(default=None, description="for skipped steps: the guard that stopped them")


class PlaybookTest(_Strict):
    name: str
    interval: Duration = 60.0
    start: AwareDatetime | None = None
    anomaly: str = Field(description="when a point counts as anomalous, e.g. value > 0.5")
    series: list[InputSeries] = Field(min_length=1)
    min_signals: int = Field(default=1, ge=1)
    resolve_after: Duration = 900.0
    expect: list[Expectation] = Field(default_factory=list)

    @field_validator("anomaly")
    @classmethod
    def _condition(cls, anomaly: str) -> str:
        compile_condition(anomaly)
        return anomaly


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

    @property
    def passed(self) -> bool:
        return len(self.observed) == len(self.expected) and all(
            o.matches(e) for o, e in zip(self.observed, self.expected, strict=True)
        )


class _ConditionDetector(BatchDetector):
    """Scores 1 where the test's anomaly condition holds: deterministic input for playbook tests."""

    def __init__(self, condition: str, capacity: int) -> None:
        self._condition = condition
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    def ensure_capacity(self, capacity: int) -> None:
        self._capacity = max(self._capacity, capacity)

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        return np.array(
            [0.0 if math.isnan(v) else float(evaluate_condition(self._condition, {"value": v})) for v in values]
        )

    def reset_slot(self, slot: int) -> None:
        return

    def snapshot_slot(self, slot: int) -> State:
        return {}

    def restore_slot(self, slot: int, state: State) -> None:
        return


class _Samples:
    def __init__(self, batches: Sequence[Sequence[MetricSample]]) -> None:
        self._batches = batches

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        for batch in self._batches:
            yield batch


class _Recorder:
    def __init__(self) -> None:
        self.results: dict[str, ActionResult] = {}

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return

    def on_incident_change(self, change: IncidentChange) -> None:
        return

    def on_action(self, result: ActionResult) -> None:
        # Insertion order is the order steps were first decided; later results (verification) update in place.
        self.results[result.request.id] = result


def _batches(test: PlaybookTest) -> list[list[MetricSample]]:
    origin = test.start.timestamp() if test.start is not None else 0.0
    streams = [(SeriesKey.parse(s.series), expand_values(s.values)) for s in test.series]
    length = max(len(values) for _, values in streams)
    return [
        [MetricSample(key, origin + i * test.interval, values[i]) for key, values in streams if i < len(values)]
        for i in range(length)
    ]


async def run_test(test: PlaybookTest, playbooks: Sequence[Playbook], policy: Policy) -> TestOutcome:
    recorder = _Recorder()
    clock = FakeClock()
    pipeline = Pipeline(
        source=_Samples(_batches(test)),
        detection=DetectionService(
            DetectionPolicy(detector="test-condition"), _ConditionDetector(test.anomaly, 16), threshold=0.5
        ),
        incidents=IncidentManager(
            IncidentPolicy(
                min_signals=test.min_signals, open_window_s=10 * test.interval, resolve_after_s=test.resolve_after
            )
        ),
        remediator=Remediator(
            Planner(playbooks, ActionMode.DRY_RUN), ActionExecutor(InMemoryLedger(), clock, {}), policy, RunHistory()
        ),
        store=InMemoryIncidentStore(),
        observer=recorder,
    )
    await pipeline.run()
    observed = tuple(
        Observed(r.request.playbook, r.request.action, r.status.value, r.effects.get("guard"), r.detail)
        for r in recorder.results.values()
    )
    return TestOutcome(test.name, observed, tuple(test.expect))


def describe_failure(outcome: TestOutcome) -> list[str]:
    lines = [f"  expected {len(outcome.expected)} step(s):"]
    lines += [
        f"    {e.playbook} {e.action or '*'} -> {e.status}" + (f" [{e.guard}]" if e.guard else "")
        for e in outcome.expected
    ]
    lines.append(f"  observed {len(outcome.observed)} step(s):")
    lines += [f"    {o}" for o in outcome.observed]
    return lines
