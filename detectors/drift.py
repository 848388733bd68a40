"""Distribution drift of a model's inputs or outputs: PSI and Kolmogorov-Smirnov, reference window vs recent window.

Both detectors see the raw values of one feature (or one model output) as a series. After ``warmup`` points
(skipped, so start-up transients do not become the baseline) the next ``reference`` points form the reference
sample, fixed from then on; the last ``recent`` points form the recent window. Each point is scored once the
reference is complete and the recent window full, comparing the recent window (the point included) with the
reference; before that it scores 0. Memory is bounded by ``reference + recent`` values.

The reference is never refreshed automatically: drift means "no longer like the baseline", and a baseline that
followed the data would forget a lasting shift. Re-baselining (after a model is retrained, say) is
``BatchDetector.reset_slot`` or a fresh detector.

* PSI uses ``bins`` bins between the reference's quantiles (plus one bin for each quantile value itself, which
  only matters for repeated values), proportions smoothed by ``epsilon``, and maps the index to
  [0, 1] by ``psi / (psi + psi_half)``: with the default ``psi_half = 0.25`` (the usual "significant shift"
  level) a PSI of 0.25 scores 0.5, 0.1 ("slight shift") about 0.29, and 1.0 scores 0.8.
* KS computes the two-sample statistic D and scores ``1 - p``, with p from the asymptotic Kolmogorov
  distribution for D at the two sample sizes; ties (a constant series, say) are handled exactly.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from typing import Any

import numpy as np

from detectors.base import Detector, FloatArray, State
from detectors.batching import PerSeriesBatch


class DriftStateError(ValueError):
    """Raised for a snapshot that does not fit this detector's parameters."""


class WindowDriftDetector(Detector):
    """A fixed reference window against a sliding recent window; subclasses say how far apart they are."""

    def __init__(self, reference: int = 300, recent: int = 150, warmup: int = 0) -> None:
        if reference < 2 or recent < 2:
            raise ValueError("reference and recent must hold at least 2 points")
        if warmup < 0:
            raise ValueError("warmup must not be negative")
        self.reference_size = reference
        self.recent_size = recent
        self.warmup = warmup
        self._skipped = 0
        self._reference: list[float] = []
        self._recent: deque[float] = deque(maxlen=recent)
        self._baseline: FloatArray | None = None

    def update(self, timestamp: float, value: float) -> float:
        if not math.isfinite(value):
            return 0.0
        if self._skipped < self.warmup:
            self._skipped += 1
            return 0.0
        if len(self._reference) < self.reference_size:
            self._reference.append(value)
            if len(self._reference) == self.reference_size:
                self._baseline = self._prepare(np.sort(np.array(self._reference)))
            return 0.0
        self._recent.append(value)
        if len(self._recent) < self.recent_size or self._baseline is None:
            return 0.0
        return min(max(self._score(self._baseline, np.array(self._recent)), 0.0), 1.0)

    @abc.abstractmethod
    def _prepare(self, reference: FloatArray) -> FloatArray:
        """What the score needs from the sorted reference, computed once."""

    @abc.abstractmethod
    def _score(self, baseline: FloatArray, recent: FloatArray) -> float:
        """How far the recent window is from the reference, in [0, 1]."""

    def snapshot(self) -> State:
        return {"skipped": self._skipped, "reference": list(self._reference), "recent": list(self._recent)}

    def restore(self, state: State) -> None:
        try:
            skipped = int(state["skipped"])
            reference = [float(v) for v in state["reference"]]
            recent = [float(v) for v in state["recent"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise DriftStateError("not a drift detector snapshot") from exc
        if skipped > self.warmup or len(reference) > self.reference_size or len(recent) > self.recent_size:
            raise DriftStateError("snapshot was taken with other window sizes")
        if recent and len(reference) < self.reference_size:
            raise DriftStateError("snapshot has a recent window but an incomplete reference")
        self._skipped = skipped
        self._reference = reference
        self._recent = deque(recent, maxlen=self.recent_size)
        complete = len(reference) == self.reference_size
        self._baseline = self._prepare(np.sort(np.array(reference))) if complete else None


class PsiDetector(WindowDriftDetector):
    """Population Stability Index over reference-quantile bins."""

    def __init__(
        self,
        reference: int = 300,
        recent: int = 150,
        warmup: int = 0,
        bins: int = 10,
        psi_half: float = 0.25,
        epsilon: float = 1e-4,
    ) -> None:
        if bins < 2:
            raise ValueError("bins must be at least 2")
        if psi_half <= 0 or epsilon <= 0:
            raise ValueError("psi_half and epsilon must be positive")
        super().__init__(reference, recent, warmup)
        self.bins = bins
        self.psi_half = psi_half
        self.epsilon = epsilon
        self._edges: FloatArray = np.zeros(0)

    def _prepare(self, reference: FloatArray) -> FloatArray:
        # Inner edges only; repeated quantiles (many equal values) collapse into one bin.
        self._edges = np.unique(np.quantile(reference, np.linspace(0.0, 1.0, self.bins + 1)[1:-1]))
        return self._proportions(reference)

    def _proportions(self, values: FloatArray) -> FloatArray:
        # Values exactly at an edge get a bin of their own (odd indices), so a reference made of a few repeated
        # values (a constant, a flag) still tells "the same value" from "a larger" or "a smaller" one.
        index = np.searchsorted(self._edges, values, side="left") + np.searchsorted(self._edges, values, side="right")
        counts = np.bincount(index, minlength=2 * len(self._edges) + 1)
        shares = counts / len(values) + self.epsilon
        return np.asarray(shares / shares.sum(), dtype=np.float64)

    def _score(self, baseline: FloatArray, recent: FloatArray) -> float:
        current = self._proportions(recent)
        psi = float(np.sum((current - baseline) * np.log(current / baseline)))
        return psi / (psi + self.psi_half)


class KsDetector(WindowDriftDetector):
    """Two-sample Kolmogorov-Smirnov test; the score is one minus the asymptotic p-value."""

    def _prepare(self, reference: FloatArray) -> FloatArray:
        return reference

    def _score(self, baseline: FloatArray, recent: FloatArray) -> float:
        recent = np.sort(recent)
        points = np.concatenate([baseline, recent])
        gap = np.searchsorted(baseline, points, side="right") / len(baseline) - np.searchsorted(
            recent, points, side="right"
        ) / len(recent)
        statistic = float(np.max(np.abs(gap)))
        n, m = len(baseline), len(recent)
        return 1.0 - float(_special().kolmogorov(statistic * math.sqrt(n * m / (n + m))))


def psi(**params: Any) -> PsiDetector:
    return PsiDetector(**params)


def psi_batch(capacity: int, **params: Any) -> PerSeriesBatch:
    return PerSeriesBatch(lambda: PsiDetector(**params), capacity)


def _special() -> Any:
    """``scipy.special``: only KS needs SciPy (the ``detectors`` extra), so PSI works without it."""
    from scipy import special  # noqa: PLC0415

    return special


def ks(**params: Any) -> KsDetector:
    _special()  # a missing SciPy is found when the detector is built, not at its first score
    return KsDetector(**params)


def ks_batch(capacity: int, **params: Any) -> PerSeriesBatch:
    _special()
    return PerSeriesBatch(lambda: KsDetector(**params), capacity)
