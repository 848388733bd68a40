"""The thresholding step, separate from scoring: turns anomaly scores into detections, for many series at once.

A point is a detection when its score is at or above the threshold and its series has not fired within the last
``cooldown_s`` seconds (so one long anomaly is reported once per cooldown, not on every point).
"""

from __future__ import annotations

import numpy as np

from detectors.base import BoolArray, FloatArray, IntArray, State
from detectors.vectorised import rounds


class ThresholdFilter:
    """Detections from scores for many series (slots), with a per-slot cooldown; its state is the last firing time."""

    def __init__(self, threshold: float, cooldown_s: float = 0.0) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError("threshold must be within [0, 1]")
        if cooldown_s < 0:
            raise ValueError("cooldown_s must not be negative")
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._last_fired: FloatArray = np.full(0, -np.inf)

    @property
    def capacity(self) -> int:
        """Number of slots currently allocated."""
        return len(self._last_fired)

    def ensure_capacity(self, capacity: int) -> None:
        """Grow to at least ``capacity`` slots; new slots have never fired."""
        if capacity > len(self._last_fired):
            grown = np.full(capacity, -np.inf)
            grown[: len(self._last_fired)] = self._last_fired
            self._last_fired = grown

    def reset_slot(self, slot: int) -> None:
        """Forget that ``slot`` ever fired."""
        self._last_fired[slot] = -np.inf

    def snapshot_slot(self, slot: int) -> State:
        """The slot's state as a JSON-serialisable dict: when it last fired, or None."""
        last = float(self._last_fired[slot])
        return {"last_fired": None if np.isinf(last) else last}

    def restore_slot(self, slot: int, state: State) -> None:
        """Load a state produced by ``snapshot_slot``."""
        last = state.get("last_fired")
        self._last_fired[slot] = -np.inf if last is None else float(last)

    def apply(self, slots: IntArray, timestamps: FloatArray, scores: FloatArray) -> BoolArray:
        """One boolean per point, in input order; points of one slot are taken in array order."""
        fired: BoolArray = np.asarray(scores >= self.threshold)
        candidates = np.flatnonzero(fired)
        if len(candidates) == 0:
            return fired
        if self.cooldown_s <= 0:
            np.maximum.at(self._last_fired, slots[candidates], timestamps[candidates])
            return fired
        # With a cooldown a detection depends on the slot's previous one, so the candidates are taken in rounds:
        # round r holds every slot's r-th candidate, and each round is one vectorised step.
        result = np.zeros(len(scores), dtype=np.bool_)
        for round_ in rounds(slots[candidates]):
            points = candidates[round_]
            owners = slots[points]
            ok = timestamps[points] - self._last_fired[owners] >= self.cooldown_s
            result[points[ok]] = True
            self._last_fired[owners[ok]] = timestamps[points[ok]]
        return result
