"""Verification after an action: did the signal recover within the window?

A step may declare ``verify``: a condition over ``value`` (and ``incident``) that some sample of a series must
satisfy within a window after the action (by default the incident's own series). The verifier keeps a short,
bounded history of the series that any playbook verifies, so samples that arrived while the action was being
carried out still count, and decides each pending verification once the event time has moved past it.
"""

from __future__ import annotations

import math
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
    same_labels: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="labels the watched series must carry with the values of the incident's matched series, e.g. "
        "[namespace, model]: another metric of the same workload",
    )
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
        if series.name != self.series or not all(m.matches(labels) for m in self.matchers):
            return False
        if self.same_labels:
            own = incident_series.label_map
            return all(labels.get(name) == own.get(name) for name in self.same_labels)
        return True


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
    """A verdict on a pending verification. ``judged`` is False when the verdict rests on missing data (no sample of
    the series, or samples seen only from part-way through the window): such a step is never undone, a person
    decides."""

    pending: PendingVerification
    passed: bool
    reason: str
    judged: bool = True


class Verifier:
    """Judges pending verifications on the samples this process observes.

    The pending verifications come from the action ledger (``track``), so a replica that takes a series over after a
    restart or a rebalance judges the verifications that another started. A verification fails (and its step is
    undone) only on evidence: samples of the watched series that this process saw from before the window opened to
    its end, none of which met the condition. A replica that never saw the series leaves it to the one that does.
    """

    def __init__(self, *, sees_every_series: bool = True) -> None:
        # False where series are spread over replicas (Kafka partitions): a series this process never saw is
        # another replica's to judge, not missing.
        self._sees_every_series = sees_every_series
        self._pending: dict[str, PendingVerification] = {}
        self._recent: dict[SeriesKey, deque[tuple[float, float]]] = {}
        # The earliest sample this process saw of each watched series: before it, this process knows nothing.
        self._first_seen: dict[SeriesKey, float] = {}
        self._names: frozenset[str] = frozenset()
        self._retention_s = 0.0
        # Where verifications of steps that have not run yet will look back to: as the ledger said at the last
        # refresh, and as this process planned since.
        self._kept_since: float | None = None
        self._holds: list[float] = []

    def watch(self, names: Iterable[str], retention_s: float = 0.0) -> None:
        """Keep recent history (``retention_s`` of event time, the longest window any playbook verifies over) of
        every series with one of these metric names."""
        self._names = frozenset(names)
        self._retention_s = retention_s
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
                    points = list(zip(timestamps[start:end].tolist(), values[start:end].tolist(), strict=True))
                    self._keep(series, points)
            return
        for sample in samples:
            if sample.series.name in self._names:
                self._keep(sample.series, [(sample.timestamp, sample.value)])

    def _keep(self, series: SeriesKey, points: list[tuple[float, float]]) -> None:
        if not points:
            return
        first = min(at for at, _ in points)
        if first < self._first_seen.get(series, math.inf):
            self._first_seen[series] = first
        self._recent.setdefault(series, deque()).extend(points)

    def start(self, pending: PendingVerification) -> None:
        self._pending[pending.request.id] = pending

    def track(self, pending: Iterable[PendingVerification]) -> None:
        """The verifications the ledger holds as pending now (every replica's); others are forgotten."""
        self._pending = {p.request.id: p for p in pending}

    @property
    def pending(self) -> tuple[PendingVerification, ...]:
        return tuple(self._pending.values())

    def hold(self, since: float) -> None:
        """A step with a verification looking back to ``since`` was planned here: keep samples from then on."""
        self._holds.append(since)

    def take_holds(self) -> list[float]:
        """The holds since the last call (the caller asks the ledger next, then passes both to ``keep_since``)."""
        holds, self._holds = self._holds, []
        return holds

    def keep_since(self, since: float | None) -> None:
        """The earliest moment a verification of a step that has not run yet (every replica's) looks back to."""
        self._kept_since = since

    def settle(self, watermark: float) -> list[VerificationOutcome]:
        """Decide every pending verification that the data (or the passing of time) now answers."""
        outcomes: list[VerificationOutcome] = []
        for pending in list(self._pending.values()):
            outcome = self._decide(pending, watermark)
            if outcome is not None:
                outcomes.append(outcome)
                del self._pending[pending.request.id]
        starts = [p.started_at for p in self._pending.values()] + self._holds
        if self._kept_since is not None:
            starts.append(self._kept_since)
        self._prune(min([watermark - self._retention_s, *starts]))
        return outcomes

    def _prune(self, keep_from: float) -> None:
        """Forget samples older than anything a pending or future verification can look at."""
        for history in self._recent.values():
            while history and history[0][0] < keep_from:
                history.popleft()

    def _decide(self, pending: PendingVerification, watermark: float) -> VerificationOutcome | None:
        spec = pending.spec
        seen = 0
        watched = [series for series in self._recent if spec.watches(series, pending.incident_series)]
        for series in watched:
            for at, value in self._recent[series]:
                if not pending.started_at <= at <= pending.deadline or math.isnan(value):
                    continue
                seen += 1
                try:
                    holds = evaluate_condition(spec.condition, {**pending.context, "value": value})
                except ConditionError as exc:
                    return VerificationOutcome(pending, False, f"verification condition failed: {exc}", judged=False)
                if holds:
                    return VerificationOutcome(
                        pending,
                        True,
                        f"verified: {spec.condition} held for {series} {at - pending.started_at:g}s after",
                    )
        if not self._sees_every_series and not any(
            self._recent[series] and self._recent[series][-1][0] >= pending.deadline for series in watched
        ):
            # Where series are spread over replicas, only one that still sees the series past the deadline judges
            # it: a replica whose partition moved away keeps an empty history of it and has no evidence either way.
            return None
        if watermark < pending.deadline:
            # Not over yet, or this process does not see the series: another replica judges it (or the ledger's
            # deadline for unjudged verifications hands it to a person).
            return None
        if seen == 0:
            return VerificationOutcome(
                pending,
                spec.missing_data == "pass",
                f"no data within {spec.within:g}s (missing_data: {spec.missing_data})",
                judged=spec.missing_data == "pass",
            )
        seen_from = min(self._first_seen.get(series, math.inf) for series in watched)
        if seen_from > pending.started_at:
            return VerificationOutcome(
                pending,
                False,
                f"cannot judge: {spec.condition} did not hold in the samples seen, but they start "
                f"{seen_from - pending.started_at:g}s into the window",
                judged=False,
            )
        return VerificationOutcome(pending, False, f"not verified: {spec.condition} never held within {spec.within:g}s")
