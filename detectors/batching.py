"""The generic batch shape: one ``Detector`` per slot, for families with no natural vectorised form.

``PerSeriesBatch`` satisfies the ``BatchDetector`` contract by keeping one detector instance per slot, built by
a zero-argument factory. A batch is split by slot (keeping each slot's points in array order) and each slot's
points go to its detector in one call: to ``update_many`` when the detector offers it (a family may score a run
of points with one vectorised call), else to ``update`` point by point. Either way the scores are exactly those
of the one-point path, which is what the conformance suite checks.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from detectors.base import BatchDetector, Detector, FloatArray, IntArray, State


@runtime_checkable
class SequenceUpdater(Protocol):
    """A detector that can score a run of consecutive points of its series in one call."""

    def update_many(self, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        """Exactly the scores that ``update`` would give for these points, one by one, in order."""
        ...


class SlotOutOfRangeError(IndexError):
    """Raised for a slot outside 0 .. capacity-1."""


class PerSeriesBatch(BatchDetector):
    """Many series, one ``Detector`` per slot."""

    def __init__(self, factory: Callable[[], Detector], capacity: int = 0) -> None:
        if capacity < 0:
            raise ValueError("capacity must not be negative")
        self._factory = factory
        self._detectors: list[Detector] = [factory() for _ in range(capacity)]

    @property
    def capacity(self) -> int:
        return len(self._detectors)

    def ensure_capacity(self, capacity: int) -> None:
        missing = capacity - len(self._detectors)
        self._detectors.extend(self._factory() for _ in range(max(missing, 0)))

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        if not len(slots) == len(timestamps) == len(values):
            raise ValueError("slots, timestamps and values must have the same length")
        scores = np.zeros(len(slots), dtype=np.float64)
        if len(slots) == 0:
            return scores
        slots = np.asarray(slots, dtype=np.int64)
        if int(slots.min()) < 0 or int(slots.max()) >= len(self._detectors):
            raise SlotOutOfRangeError(f"slots must be within 0 .. {len(self._detectors) - 1}")
        timestamps = np.asarray(timestamps, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64)
        # A stable sort keeps each slot's points in array order, which is what makes the scores match.
        order = np.argsort(slots, kind="stable")
        sorted_slots = slots[order]
        bounds = np.flatnonzero(np.r_[True, sorted_slots[1:] != sorted_slots[:-1], True])
        for start, stop in itertools.pairwise(bounds):
            points = order[start:stop]
            detector = self._detectors[int(sorted_slots[start])]
            scores[points] = _update_run(detector, timestamps[points], values[points])
        return scores

    def reset_slot(self, slot: int) -> None:
        self._check(slot)
        self._detectors[slot] = self._factory()

    def snapshot_slot(self, slot: int) -> State:
        self._check(slot)
        return self._detectors[slot].snapshot()

    def restore_slot(self, slot: int, state: State) -> None:
        self._check(slot)
        self._detectors[slot].restore(state)

    def _check(self, slot: int) -> None:
        if not 0 <= slot < len(self._detectors):
            raise SlotOutOfRangeError(f"slot {slot} is outside 0 .. {len(self._detectors) - 1}")


def _update_run(detector: Detector, timestamps: FloatArray, values: FloatArray) -> FloatArray:
    if isinstance(detector, SequenceUpdater):
        return detector.update_many(timestamps, values)
    return np.fromiter(
        (detector.update(float(t), float(v)) for t, v in zip(timestamps, values, strict=True)),
        dtype=np.float64,
        count=len(values),
    )
