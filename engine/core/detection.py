"""Per-series online detection: maps series to detector slots and turns scores into anomalies.

All series share one vectorised batch detector; each series owns a slot. Scoring and thresholding are separate
steps, as the detectors library prescribes. A series' learned state (its detector slot and its threshold cooldown)
can be captured, restored into another process and forgotten, so that a partitioned source can hand series over
between engine processes without losing what was learned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import registry
from detectors.base import BatchDetector, State
from detectors.thresholds import ThresholdFilter
from engine.domain.batches import SampleBatch
from engine.domain.events import Anomaly, MetricSample, SeriesKey, Severity


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


class DetectionService:
    """Scores batches of samples of many series and reports the anomalous ones."""

    def __init__(self, policy: DetectionPolicy, detector: BatchDetector, threshold: float) -> None:
        self._policy = policy
        self._threshold = threshold
        self._detector = detector
        self._filter = ThresholdFilter(threshold, cooldown_s=policy.cooldown_s)
        self._filter.ensure_capacity(detector.capacity)
        self._slots: dict[SeriesKey, int] = {}
        # Slots of forgotten series, reset and ready for the next new series.
        self._free: list[int] = []
        self._allocated = 0
        self._listeners: list[Callable[[Sequence[MetricSample]], None]] = []

    @classmethod
    def from_registry(cls, policy: DetectionPolicy, initial_capacity: int = 1024) -> DetectionService:
        """A service running the named detector family (UnknownDetectorError if there is none)."""
        kind = registry.get(policy.detector)
        threshold = kind.default_threshold if policy.threshold is None else policy.threshold
        return cls(policy, kind.make_batch(initial_capacity, **dict(policy.params)), threshold)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def series_count(self) -> int:
        return len(self._slots)

    def _slot(self, series: SeriesKey) -> int:
        slot = self._slots.get(series)
        if slot is None:
            if self._free:
                slot = self._free.pop()
            else:
                slot = self._allocated
                self._allocated += 1
            self._slots[series] = slot
            if slot >= self._detector.capacity:
                grown = max(2 * self._detector.capacity, slot + 1)
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
        """Continue each series from a state ``capture`` gave (here or in another process)."""
        for key, state in states.items():
            slot = self._slot(key)
            self._detector.restore_slot(slot, state.detector)
            self._filter.restore_slot(slot, state.threshold)

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
        else:
            slots = np.fromiter((self._slot(s.series) for s in samples), dtype=np.int64, count=len(samples))
            timestamps = np.fromiter((s.timestamp for s in samples), dtype=np.float64, count=len(samples))
            values = np.fromiter((s.value for s in samples), dtype=np.float64, count=len(samples))
        scores = self._detector.update_batch(slots, timestamps, values)
        fired = self._filter.apply(slots, timestamps, scores)
        anomalies: list[Anomaly] = []
        for index in np.flatnonzero(fired):
            sample = samples[int(index)]
            score = float(scores[index])
            severity = Severity.CRITICAL if score >= self._policy.critical_score else Severity.WARNING
            anomalies.append(
                Anomaly(sample.series, sample.timestamp, sample.value, score, self._policy.detector, severity)
            )
        return anomalies
