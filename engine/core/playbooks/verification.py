"""Verification after an action: did the signal recover within the window?

A step may declare ``verify``: a condition over ``value`` (and ``incident``) that some sample of a series must
satisfy within a window after the action (by default the incident's own series). The verifier keeps a short,
bounded history of the series that any playbook verifies, so samples that arrived while the action was being
carried out still count, and decides each pending verification once the event time has moved past it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.core.playbooks.expressions import ConditionError, Duration, Matcher, compile_condition, evaluate_condition
from engine.domain.batches import SampleBatch
from engine.domain.events import ActionRequest, MetricSample, SeriesKey


class Verify(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    condition: str = Field(min_length=1, description="expression over value (and incident), e.g. value < 0.2")
    series: str | None = Field(default=None, description="metric name to watch (default: the incident's series)")
    matchers: list[Matcher] = Field(default_factory=list, description="label matchers for series")
    within: Duration = Field(description="how long after the action the condition may take to hold")
    missing_data: Literal["fail", "pass"] = Field(
        default="fail", description="the verdict when no sample of the series arrives within the window"
    )

    @field_validator("condition")
    @classmethod
    def _compiles(cls, condition: str) -> str:
        compile_condition(condition)
        return condition

    def watches(self, series: SeriesKey, incident_series: SeriesKey) -> bool:
        if self.series is None:
            return series == incident_series
        labels = series.label_map
        return series.name == self.series and all(m.matches(labels) for m in self.matchers)


@dataclass(frozen=True)
class PendingVerification:
    request: ActionRequest
    spec: Verify
    incident_series: SeriesKey
    context: dict[str, Any]
    started_at: float
    undo: bool = True

    @property
    def deadline(self) -> float:
        return self.started_at + self.spec.within


@dataclass(frozen=True)
class VerificationOutcome:
    pending: PendingVerification
    passed: bool
    reason: str


class Verifier:
    def __init__(self) -> None:
        self._pending: list[PendingVerification] = []
        self._recent: dict[SeriesKey, deque[tuple[float, float]]] = {}
        self._names: frozenset[str] = frozenset()

    def watch(self, names: Iterable[str]) -> None:
        """Keep recent history of every series with one of these metric names."""
        self._names = frozenset(names)
        self._recent = {key: history for key, history in self._recent.items() if key.name in self._names}

    def history(self, series: SeriesKey) -> list[tuple[float, float]]:
        """The (timestamp, value) points kept of ``series``, oldest first."""
        return list(self._recent.get(series, ()))

    def observe(self, samples: Sequence[MetricSample]) -> None:
        # Detection runs ahead of remediation, so history is pruned by ``settle`` (remediation's event time), not
        # here: a verification that starts later must still find the samples that arrived meanwhile.
        if not self._names:
            return
        if isinstance(samples, SampleBatch):
            # Columnar: whole runs of a series are kept or skipped at once.
            timestamps, values = samples.timestamps, samples.values
            for series, start, end in samples.runs():
                if series.name in self._names:
                    points = zip(timestamps[start:end].tolist(), values[start:end].tolist(), strict=True)
                    self._recent.setdefault(series, deque()).extend(points)
            return
        for sample in samples:
            if sample.series.name in self._names:
                self._recent.setdefault(sample.series, deque()).append((sample.timestamp, sample.value))

    def start(self, pending: PendingVerification) -> None:
        self._pending.append(pending)

    @property
    def pending(self) -> tuple[PendingVerification, ...]:
        return tuple(self._pending)

    def settle(self, watermark: float) -> list[VerificationOutcome]:
        """Decide every pending verification that the data (or the passing of time) now answers."""
        outcomes: list[VerificationOutcome] = []
        waiting: list[PendingVerification] = []
        for pending in self._pending:
            outcome = self._decide(pending, watermark)
            if outcome is None:
                waiting.append(pending)
            else:
                outcomes.append(outcome)
        self._pending = waiting
        self._prune(min([watermark, *(p.started_at for p in waiting)]))
        return outcomes

    def _prune(self, keep_from: float) -> None:
        """Forget samples older than anything a pending or future verification can look at."""
        for history in self._recent.values():
            while history and history[0][0] < keep_from:
                history.popleft()

    def _decide(self, pending: PendingVerification, watermark: float) -> VerificationOutcome | None:
        spec = pending.spec
        seen = 0
        for series, history in self._recent.items():
            if not spec.watches(series, pending.incident_series):
                continue
            for at, value in history:
                if not pending.started_at <= at <= pending.deadline:
                    continue
                seen += 1
                try:
                    holds = evaluate_condition(spec.condition, {**pending.context, "value": value})
                except ConditionError as exc:
                    return VerificationOutcome(pending, False, f"verification condition failed: {exc}")
                if holds:
                    return VerificationOutcome(
                        pending,
                        True,
                        f"verified: {spec.condition} held for {series} {at - pending.started_at:g}s after",
                    )
        if watermark < pending.deadline:
            return None
        if seen == 0:
            verdict = spec.missing_data == "pass"
            return VerificationOutcome(
                pending, verdict, f"no data within {spec.within:g}s (missing_data: {spec.missing_data})"
            )
        return VerificationOutcome(pending, False, f"not verified: {spec.condition} never held within {spec.within:g}s")
