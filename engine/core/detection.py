"""Per-series online detection: maps series to detector slots and turns scores into anomalies.

All series share one vectorised batch detector; each series owns a slot. Scoring and thresholding are separate
steps, as the detectors library prescribes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from detectors.thresholds import ThresholdFilter

from detectors import registry
from detectors.base import BatchDetector
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


class DetectionService:
    """Scores batches of samples of many series and reports the anomalous ones."""

    def __init__(self, policy: DetectionPolicy, detector: BatchDetector, threshold: float) -> None:
        self._policy = policy
        self._threshold = threshold
        self._detector = detector
        self._filter = ThresholdFilter(threshold, cooldown_s=policy.cooldown_s)
        self._filter.ensure_capacity(detector.capacity)
        self._slots: dict[SeriesKey, int] = {}

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
            slot = len(self._slots)
            self._slots[series] = slot
            if slot >= self._detector.capacity:
                grown = max(2 * self._detector.capacity, slot + 1)
                self._detector.ensure_capacity(grown)
                self._filter.ensure_capacity(grown)
        return slot

    def process(self, samples: Sequence[MetricSample]) -> list[Anomaly]:
        """Score and learn ``samples`` (in order per series) and return those that are anomalous."""
        if not samples:
            return []
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
