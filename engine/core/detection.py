"""Per-series online detection: maps series to detector slots and turns scores into anomalies.

All series share one vectorised batch detector; each series owns a slot. Scoring and thresholding are separate
steps, as the detectors library prescribes. A series' learned state (its detector slot and its threshold cooldown)
can be captured, restored into another process and forgotten, so that a partitioned source can hand series over
between engine processes without losing what was learned.

Each series costs a slot of memory for as long as the process serves it, so the number of series is bounded
(``max_series``): past the bound, samples of a new series are refused (told to the refusal listeners, so that they
are counted) while the series already kept go on. This is where per-series state is created, so the bound holds
whatever the source; a source that can tell its sender (remote_write, Kafka's dead-letter topic) asks ``admit``
first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from detectors import registry
from detectors.base import BatchDetector, State
from detectors.thresholds import ThresholdFilter
from engine.domain.batches import IntArray, SampleBatch
from engine.domain.events import Anomaly, MetricSample, SeriesKey, Severity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectionPolicy:
    """Which detector runs and when a score becomes an anomaly."""

    detector: str = registry.DEFAULT_DETECTOR
    params: tuple[tuple[str, Any], ...] = ()
    # None means the detector family's own default threshold.
    threshold: float | None = None
    # Scores at or above this are critical, below it (and above the threshold) warnings.
    critical_score: float = 0.999
    # After a detection, the same series is not reported again for this long (seconds of event time).
    cooldown_s: float = 0.0


@dataclass(frozen=True)
class DetectorSlotState:
    """What detection learned about one series: its detector slot's state and its threshold filter's (cooldown)."""

    detector: State
    threshold: State


# A reason given to refusal listeners: the series would have gone past ``max_series``.
SERIES_LIMIT = "series_limit"


class SeriesAdmission(Protocol):
    """Where an entry point asks, before handing samples on, which new series may still be kept."""

    def admit(self, series: Iterable[SeriesKey]) -> set[SeriesKey]:
        """Keep room for each of ``series`` that is new and fits; return those refused."""

    async def make_room(self, series: Collection[SeriesKey]) -> None:
        """Grow ahead of the new ones among ``series``, with the loop free while the new memory is prepared."""


class DetectionService:
    """Scores batches of samples of many series and reports the anomalous ones."""

    def __init__(
        self, policy: DetectionPolicy, detector: BatchDetector, threshold: float, *, max_series: int | None = None
    ) -> None:
        if max_series is not None and max_series < 0:
            raise ValueError("max_series must not be negative")
        self._policy = policy
        self._max_series = max_series
        self._threshold = threshold
        self._detector = detector
        self._filter = ThresholdFilter(threshold, cooldown_s=policy.cooldown_s)
        self._filter.ensure_capacity(detector.capacity)
        self._slots: dict[SeriesKey, int] = {}
        # Slots of forgotten series, reset and ready for the next new series.
        self._free: list[int] = []
        self._allocated = 0
        self._listeners: list[Callable[[Sequence[MetricSample]], None]] = []
        self._refusal_listeners: list[Callable[[str, int], None]] = []

    @classmethod
    def from_registry(
        cls, policy: DetectionPolicy, initial_capacity: int = 1024, *, max_series: int | None = None
    ) -> DetectionService:
        """A service running the named detector family (UnknownDetectorError if there is none)."""
        kind = registry.get(policy.detector)
        threshold = kind.default_threshold if policy.threshold is None else policy.threshold
        # The first allocation need not be larger than the bound.
        capacity = initial_capacity if max_series is None else max(1, min(initial_capacity, max_series))
        return cls(policy, kind.make_batch(capacity, **dict(policy.params)), threshold, max_series=max_series)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def series_count(self) -> int:
        return len(self._slots)

    def add_refusal_listener(self, listener: Callable[[str, int], None]) -> None:
        """Call ``listener`` with a reason and a count whenever new series are refused (in ``admit``, ``process``
        or ``restore``), once per batch, request or restore."""
        self._refusal_listeners.append(listener)

    def admit(self, series: Iterable[SeriesKey]) -> set[SeriesKey]:
        """Make a slot for each of ``series`` that is new, while the bound allows; return those refused."""
        refused = {key for key in series if self._slot(key) < 0}
        self._refused(len(refused))
        return refused

    async def make_room(self, series: Collection[SeriesKey]) -> None:
        """Grow ahead of the new ones among ``series`` (as far as the bound allows): the new memory is allocated and
        filled in a worker thread, and only the copy of the current state runs here. Growing while admitting held
        the event loop for 0.05-0.2 s at tens of thousands of series (pages of a new array of tens of MB)."""
        capacity = self._capacity_for(len(self._slots) + sum(1 for key in series if key not in self._slots))
        if capacity is None:
            return
        install = await asyncio.to_thread(self._detector.prepare_capacity, capacity)
        install()
        self._filter.ensure_capacity(self._detector.capacity)

    def _capacity_for(self, series_count: int) -> int | None:
        """The capacity to grow to for ``series_count`` series, or None if the current one holds them."""
        needed = series_count if self._max_series is None else min(series_count, self._max_series)
        capacity = self._detector.capacity
        if needed <= capacity:
            return None
        grown = max(2 * capacity, needed)
        # Never room for more series than the bound.
        return grown if self._max_series is None else min(grown, self._max_series)

    def _refused(self, count: int) -> None:
        if count:
            for listener in self._refusal_listeners:
                listener(SERIES_LIMIT, count)

    def _slot(self, series: SeriesKey) -> int:
        """The series' slot, made if it is new; -1 if it is new and there is no room for another series."""
        slot = self._slots.get(series)
        if slot is None:
            if self._max_series is not None and len(self._slots) >= self._max_series:
                return -1
            if self._free:
                slot = self._free.pop()
            else:
                slot = self._allocated
                self._allocated += 1
            self._slots[series] = slot
            grown = self._capacity_for(slot + 1)
            if grown is not None:
                self._detector.ensure_capacity(grown)
                self._filter.ensure_capacity(grown)
        return slot

    def add_batch_listener(self, listener: Callable[[Sequence[MetricSample]], None]) -> None:
        """Call ``listener`` with each batch right after it is processed, before the next one is: the moment at
        which ``capture`` gives the state as of the end of that batch."""
        self._listeners.append(listener)

    def capture(self, series: Iterable[SeriesKey]) -> dict[SeriesKey, DetectorSlotState]:
        """The learned state of each of ``series`` this service knows."""
        states: dict[SeriesKey, DetectorSlotState] = {}
        for key in series:
            slot = self._slots.get(key)
            if slot is not None:
                states[key] = DetectorSlotState(self._detector.snapshot_slot(slot), self._filter.snapshot_slot(slot))
        return states

    def restore(self, states: Mapping[SeriesKey, DetectorSlotState]) -> None:
        """Continue each series from a state ``capture`` gave (here or in another process). The series bound holds
        here too (a process taking over partitions must not grow past it): a state without room is dropped. A
        detector state that does not fit this detector (saved by another version of it, or by another family or
        parameters) is refused with a warning, and that series starts afresh; its cooldown is still restored."""
        refused = 0
        misfits: list[SeriesKey] = []
        reason: Exception | None = None
        for key, state in states.items():
            slot = self._slot(key)
            if slot < 0:
                refused += 1
                continue
            try:
                self._detector.restore_slot(slot, state.detector)
            except (ValueError, KeyError, TypeError) as exc:
                self._detector.reset_slot(slot)
                misfits.append(key)
                reason = reason or exc
            self._filter.restore_slot(slot, state.threshold)
        self._refused(refused)
        if misfits:
            log.warning(
                "the saved detector state of %d series does not fit detector %r (saved by another version of it, or "
                "with other parameters): they start learning afresh; first: %s (%s)",
                len(misfits),
                self._policy.detector,
                misfits[0],
                reason,
            )

    def forget(self, series: Iterable[SeriesKey]) -> None:
        """Drop what was learned about ``series`` (another process serves them now); their slots are reused."""
        for key in series:
            slot = self._slots.pop(key, None)
            if slot is not None:
                self._detector.reset_slot(slot)
                self._filter.reset_slot(slot)
                self._free.append(slot)

    def process(self, samples: Sequence[MetricSample]) -> list[Anomaly]:
        """Score and learn ``samples`` (in order per series) and return those that are anomalous."""
        if not samples:
            return []
        anomalies = self._process(samples)
        for listener in self._listeners:
            listener(samples)
        return anomalies

    def _process(self, samples: Sequence[MetricSample]) -> list[Anomaly]:
        if isinstance(samples, SampleBatch):
            # Columnar: one slot lookup per run of a series, not one per sample.
            run_slots = np.fromiter((self._slot(series) for series in samples.series), dtype=np.int64)
            slots = np.repeat(run_slots, samples.run_lengths)
            timestamps, values = samples.timestamps, samples.values
            refused = {series for series, slot in zip(samples.series, run_slots.tolist(), strict=True) if slot < 0}
        else:
            slots = np.fromiter((self._slot(s.series) for s in samples), dtype=np.int64, count=len(samples))
            timestamps = np.fromiter((s.timestamp for s in samples), dtype=np.float64, count=len(samples))
            values = np.fromiter((s.value for s in samples), dtype=np.float64, count=len(samples))
            refused = {s.series for s, slot in zip(samples, slots.tolist(), strict=True) if slot < 0}
        rows: IntArray | None = None
        if refused:
            # Samples of series without room are left out; ``rows`` maps what is scored back to ``samples``.
            self._refused(len(refused))
            rows = np.flatnonzero(slots >= 0)
            slots, timestamps, values = slots[rows], timestamps[rows], values[rows]
            if not len(rows):
                return []
        scores = self._detector.update_batch(slots, timestamps, values)
        fired = self._filter.apply(slots, timestamps, scores)
        anomalies: list[Anomaly] = []
        for index in np.flatnonzero(fired):
            sample = samples[int(index if rows is None else rows[index])]
            score = float(scores[index])
            severity = Severity.CRITICAL if score >= self._policy.critical_score else Severity.WARNING
            anomalies.append(
                Anomaly(sample.series, sample.timestamp, sample.value, score, self._policy.detector, severity)
            )
        return anomalies
