"""river's streaming detectors behind this library's contract: Half-Space Trees and the ADWIN / Page-Hinkley
drift detectors.

* ``HalfSpaceTreesDetector`` scores each value with ``anomaly.HalfSpaceTrees`` before learning it. HST expects
  features within known limits: with ``value_range=(lo, hi)`` those are the limits, otherwise a running min-max
  scaler (over earlier points only) maps the range seen so far to [0.375, 0.625] of HST's [0, 1]. The margins matter:
  HST only finds a value unusual when it lands in a region of little mass, and with the range mapped to the full
  [0, 1] a new extreme would share the edge leaf with the previous extremes. (river's ``MinMaxScaler`` has no
  margin and yields NaN before its first point, hence our own.) river's score is ``1 - mass / max_mass`` with a
  normaliser so large that every score is above 0.99; we undo it to the mean per-tree mass ``m`` (in units of
  ``window_size``) and report ``exp(-m / mass_scale)``: 1 in an empty region, near 0 in the bulk. HST scores 0
  until its first window of ``window_size`` points has been learned. In one dimension HST is a density check: it
  flags values far outside the usual range, not small spikes or level shifts within it.
* ``adwin`` and ``page_hinkley`` (a ``RiverDriftDetector`` each) feed each value to the drift detector and score 1.0
  on the point at which it reports a change, else 0.0. The point itself takes part in that test (a change shows once
  its first point has arrived); later points never do.

State format: river objects have no plain-data form, so a snapshot carries the whole river object(s) as a
zlib-compressed pickle in base64 (``{"river": ..., "pickle": "..."}``), plus the river version that wrote it;
restoring under another river version raises ``RiverSnapshotError`` rather than guessing. Unpickling runs code
named by the data, so snapshots must come only from this engine's own state store, never from users. A restored
detector continues identically, HST's random generator included (its seed fixes the trees).
"""

from __future__ import annotations

import base64
import math
import pickle
import zlib
from collections.abc import Callable, Hashable
from importlib import metadata
from typing import Any

from river import anomaly, drift
from river.base import DriftDetector

from detectors.base import Detector, State
from detectors.batching import PerSeriesBatch

_FEATURE = "x"
_RIVER_VERSION = metadata.version("river")


class RiverSnapshotError(ValueError):
    """Raised for a snapshot that this river version cannot restore, or that is not a river snapshot at all."""


def _pack(obj: object) -> State:
    payload = zlib.compress(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    return {"river": _RIVER_VERSION, "pickle": base64.b64encode(payload).decode("ascii")}


def _unpack(state: State) -> Any:
    try:
        version, text = state["river"], state["pickle"]
    except (KeyError, TypeError) as exc:
        raise RiverSnapshotError("not a river detector snapshot") from exc
    if version != _RIVER_VERSION:
        raise RiverSnapshotError(f"snapshot written by river {version}, this is river {_RIVER_VERSION}")
    try:
        return pickle.loads(zlib.decompress(base64.b64decode(text)))
    except (ValueError, zlib.error, pickle.UnpicklingError) as exc:
        raise RiverSnapshotError("corrupt river detector snapshot") from exc


class HalfSpaceTreesDetector(Detector):
    """Half-Space Trees on the value, scaled by a fixed range or by the running range of earlier values."""

    def __init__(
        self,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        value_range: tuple[float, float] | None = None,
        mass_scale: float = 6.0,
        seed: int = 42,
    ) -> None:
        if n_trees < 1 or height < 1 or window_size < 1:
            raise ValueError("n_trees, height and window_size must be positive")
        if value_range is not None and not value_range[0] < value_range[1]:
            raise ValueError("value_range must be (low, high) with low < high")
        if mass_scale <= 0:
            raise ValueError("mass_scale must be positive")
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.value_range = value_range
        self.mass_scale = mass_scale
        self.seed = seed
        self._hst = self._fresh()
        # Running range of the values learned so far; unused with a fixed value_range.
        self._low = math.inf
        self._high = -math.inf

    def _fresh(self) -> anomaly.HalfSpaceTrees:
        limits: dict[Hashable, tuple[float, float]] | None = (
            None if self.value_range is None else {_FEATURE: self.value_range}
        )
        return anomaly.HalfSpaceTrees(
            n_trees=self.n_trees, height=self.height, window_size=self.window_size, limits=limits, seed=self.seed
        )

    def _scaled(self, value: float) -> float:
        if self.value_range is not None:
            return value
        if not self._high > self._low:
            return 0.5
        return min(max(0.375 + 0.25 * (value - self._low) / (self._high - self._low), 0.0), 1.0)

    def update(self, timestamp: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        features = {_FEATURE: self._scaled(value)}
        # river's HST methods carry no annotations.
        river_score = float(self._hst.score_one(features))  # type: ignore[no-untyped-call]
        self._hst.learn_one(features)  # type: ignore[no-untyped-call]
        self._low, self._high = min(self._low, value), max(self._high, value)
        if river_score <= 0.0:
            return 0.0
        mass = (1.0 - river_score) * (2.0 ** (self.height + 1) - 1.0)
        return min(max(math.exp(-mass / self.mass_scale), 0.0), 1.0)

    def snapshot(self) -> State:
        return _pack((self._hst, self._low, self._high))

    def restore(self, state: State) -> None:
        hst, low, high = _unpack(state)
        if not isinstance(hst, anomaly.HalfSpaceTrees):
            raise RiverSnapshotError("snapshot is not from a Half-Space Trees detector")
        self._hst, self._low, self._high = hst, float(low), float(high)


class RiverDriftDetector(Detector):
    """Any river ``drift`` detector: 1.0 on the point at which it reports a change, else 0.0."""

    def __init__(self, make: Callable[[], DriftDetector]) -> None:
        self._make = make
        self._detector = make()

    def update(self, timestamp: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        self._detector.update(value)
        return 1.0 if self._detector.drift_detected else 0.0

    def snapshot(self) -> State:
        return _pack(self._detector)

    def restore(self, state: State) -> None:
        restored = _unpack(state)
        if type(restored) is not type(self._detector):
            raise RiverSnapshotError(f"snapshot holds {type(restored).__name__}, not {type(self._detector).__name__}")
        self._detector = restored


def half_space_trees(**params: Any) -> HalfSpaceTreesDetector:
    return HalfSpaceTreesDetector(**params)


def half_space_trees_batch(capacity: int, **params: Any) -> PerSeriesBatch:
    return PerSeriesBatch(lambda: HalfSpaceTreesDetector(**params), capacity)


def adwin(delta: float = 0.002, clock: int = 32, grace_period: int = 10) -> RiverDriftDetector:
    """ADWIN with river's defaults; ``delta`` is the confidence of a reported change (smaller: fewer, surer)."""
    if not 0.0 < delta < 1.0:
        raise ValueError("delta must be within (0, 1)")
    return RiverDriftDetector(
        lambda: drift.ADWIN(delta=delta, clock=clock, grace_period=grace_period)  # type: ignore[no-untyped-call]
    )


def adwin_batch(capacity: int, **params: Any) -> PerSeriesBatch:
    return PerSeriesBatch(lambda: adwin(**params), capacity)


def page_hinkley(
    min_instances: int = 30, delta: float = 0.005, threshold: float = 50.0, alpha: float = 0.9999, mode: str = "both"
) -> RiverDriftDetector:
    """Page-Hinkley with river's defaults; ``threshold`` is in the series' own units, so scale it to the metric."""
    if threshold <= 0:
        raise ValueError("threshold must be positive")
    return RiverDriftDetector(
        lambda: drift.PageHinkley(min_instances=min_instances, delta=delta, threshold=threshold, alpha=alpha, mode=mode)
    )


def page_hinkley_batch(capacity: int, **params: Any) -> PerSeriesBatch:
    return PerSeriesBatch(lambda: page_hinkley(**params), capacity)
