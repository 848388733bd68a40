"""The contract every detector in this library honours.

A detector watches one series and is *online*: each point is scored against what the detector learned from
earlier points only, and then learned (no look-ahead). Scores are anomaly scores in [0, 1], higher meaning more
anomalous; turning scores into detections is a separate step (see ``detectors.thresholds``).

Each detector family comes in two shapes that must give identical scores:

* ``Detector`` -- one series, one point at a time (easy to reason about, used by the conformance suite);
* ``BatchDetector`` -- many series at once, state kept per *slot* (one slot per series) so that thousands of
  series are updated by a few numpy operations. Families without a natural vectorised form use
  ``detectors.batching.PerSeriesBatch``, which keeps one ``Detector`` per slot.

Values that are not finite are not scored and not learned: NaN is a missing point (Prometheus marks a series that
went stale with one), and +Inf or -Inf (a ratio over zero, an overflowing counter) is no value a baseline can hold;
one of them learned would turn a mean or variance into NaN or infinity and blind the detector to that series for
good. Such a point scores 0.0 and leaves the state as it was, in both shapes; whoever feeds the detector counts
these points if it wants to report them (the score of a point says how unusual a *number* is, and these carry
none). Finite values so large that the arithmetic of an update overflows are scored 1.0 (nothing can be further
from the baseline) and not learned either.

State must survive restarts and Kafka rebalances, so both shapes can ``snapshot`` a series' state to a plain,
JSON-serialisable dict and ``restore`` it, and a restored detector continues exactly where the original was.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
# A plain, JSON-serialisable mapping: numbers, strings, None, lists and dicts of those.
State = dict[str, Any]


class Detector(abc.ABC):
    """Scores one series online."""

    @abc.abstractmethod
    def update(self, timestamp: float, value: float) -> float:
        """Score ``value`` (observed at ``timestamp``, epoch seconds) in [0, 1], then learn it.

        A value that is not finite (NaN: a missing point; +Inf, -Inf) scores 0.0 and leaves the state unchanged.
        """

    @abc.abstractmethod
    def snapshot(self) -> State:
        """The detector's learned state as a plain dict (hyper-parameters are not part of it)."""

    @abc.abstractmethod
    def restore(self, state: State) -> None:
        """Replace the learned state with one produced by ``snapshot`` of a detector with the same parameters."""


class BatchDetector(abc.ABC):
    """The same detector for many series at once; series are addressed by integer slots."""

    @property
    @abc.abstractmethod
    def capacity(self) -> int:
        """Number of slots currently allocated (slots are 0 .. capacity-1)."""

    @abc.abstractmethod
    def ensure_capacity(self, capacity: int) -> None:
        """Grow to at least ``capacity`` slots; new slots start fresh. Never shrinks."""

    def prepare_capacity(self, capacity: int) -> Callable[[], None]:
        """Split ``ensure_capacity`` in two: this call does the costly part (allocating and filling the new memory)
        and may run in another thread while the detector is in use; the returned function does the rest (a copy of
        the current state into it) where the detector is used, and grows to at least ``capacity``."""
        return lambda: self.ensure_capacity(capacity)

    @abc.abstractmethod
    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        """Score then learn each point; the result has one score per point, in input order.

        A slot may appear several times in one call: its points are taken in array order, so the scores are
        exactly those that ``Detector.update`` would give point by point (non-finite values included).
        """

    @abc.abstractmethod
    def reset_slot(self, slot: int) -> None:
        """Forget everything learned for ``slot`` (the slot is about to serve another series)."""

    @abc.abstractmethod
    def snapshot_slot(self, slot: int) -> State:
        """The learned state of one slot, in the same format as ``Detector.snapshot``."""

    @abc.abstractmethod
    def restore_slot(self, slot: int, state: State) -> None:
        """Load a state produced by ``snapshot_slot`` or ``Detector.snapshot`` into ``slot``."""
