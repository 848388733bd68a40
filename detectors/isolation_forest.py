"""Isolation Forest over sliding windows of one series, refitted periodically on a bounded history.

Each point becomes a feature row of two numbers: its jump from the previous value, and its distance from the mean
of the ``window - 1`` values before it. Both are indifferent to the series' level, so a slow trend or cycle does not
look anomalous, while a spike (both large) or the start of a level shift (the second large) does. The raw value is
deliberately not a feature: a level outside the bounded history would make every point of a trend an outlier.

A row is scored by the forest fitted on earlier rows only, then joins the history; the first forest is fitted once
``min_fit`` rows exist, and a new one every ``refit_every`` rows on the latest ``history`` rows. The score is
scikit-learn's ``-score_samples``, i.e. the anomaly score of Liu et al. (2008) in (0, 1]: around 0.5 or below for
ordinary points, near 1 for isolated ones. Points before the first forest score 0.

A known limit of isolation forests: a point beyond the range of the training rows follows the path of the most
extreme training row, so its score saturates at that row's score. A spike therefore scores about as high as the
most unusual jump in the history, not higher; a history that already holds a spike masks the next one.

Scoring does not go through ``score_samples``: that dispatches one joblib task per tree, about 10 ms for a single
row, which would dominate an online loop. The fitted trees are instead packed into arrays once per fit and all
trees are walked together with numpy, one step per tree level (``PackedForest``; same formula, same float32 split
comparisons, agreeing with ``-score_samples`` to rounding). ``update_many`` scores a run of points with one walk per
forest instead of one per point; a row's score does not depend on the rows scored with it, so the scores are the
ones ``update`` gives.

State is plain data: the recent values, the feature-row history and the number of rows since the last fit. The
forest itself is not stored: fitting is deterministic for a given seed, so ``restore`` refits it on the rows it
was fitted on (which the history keeps: it holds ``history + refit_every`` rows).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.ensemble import IsolationForest

from detectors.base import Detector, FloatArray, State
from detectors.batching import PerSeriesBatch

# Forests compare features in float32: larger magnitudes (or an infinite difference of two huge values) would
# not fit, and a feature this large is already as isolated as a feature can be.
FEATURE_LIMIT = 1e30


def _bounded(feature: float) -> float:
    return min(max(feature, -FEATURE_LIMIT), FEATURE_LIMIT)


class IsolationForestStateError(ValueError):
    """Raised for a snapshot that does not fit this detector's parameters."""


def average_path_length(n: npt.NDArray[np.int64]) -> FloatArray:
    """Expected depth of an unsuccessful search in a binary search tree of ``n`` points (Liu et al., eq. 1)."""
    n = np.asarray(n, dtype=np.float64)
    safe = np.maximum(n, 3.0)
    general = 2.0 * (np.log(safe - 1.0) + np.euler_gamma) - 2.0 * (safe - 1.0) / safe
    return np.asarray(np.where(n <= 1.0, 0.0, np.where(n <= 2.0, 1.0, general)), dtype=np.float64)


class PackedForest:
    """A fitted ``IsolationForest`` as padded per-tree node arrays, scored by walking all trees at once."""

    def __init__(self, forest: IsolationForest) -> None:
        trees = [estimator.tree_ for estimator in forest.estimators_]
        width = max(tree.node_count for tree in trees)
        shape = (len(trees), width)
        self._left = np.zeros(shape, dtype=np.int64)
        self._right = np.zeros(shape, dtype=np.int64)
        self._feature = np.zeros(shape, dtype=np.int64)
        self._threshold = np.zeros(shape, dtype=np.float64)
        self._leaf = np.ones(shape, dtype=np.bool_)
        self._path = np.zeros(shape, dtype=np.float64)
        self._depth = 0
        for i, tree in enumerate(trees):
            count = tree.node_count
            left, right = tree.children_left, tree.children_right
            depth = np.zeros(count, dtype=np.int64)
            # Nodes are numbered depth-first, parents before children, so one pass in order finds every depth.
            for node in range(count):
                if left[node] >= 0:
                    depth[left[node]] = depth[right[node]] = depth[node] + 1
            self._leaf[i, :count] = left < 0
            self._left[i, :count] = np.where(left < 0, np.arange(count), left)
            self._right[i, :count] = np.where(right < 0, np.arange(count), right)
            self._feature[i, :count] = np.maximum(tree.feature, 0)
            self._threshold[i, :count] = tree.threshold
            self._path[i, :count] = depth + average_path_length(tree.n_node_samples)
            self._depth = max(self._depth, int(depth.max()))
        self._norm = len(trees) * float(average_path_length(np.array([forest.max_samples_]))[0])

    def score(self, rows: FloatArray) -> FloatArray:
        """The anomaly score 2 ** (-mean path length / c(max_samples)) of each row, in (0, 1]."""
        # The trees split float32 copies of the data, so compare float32 values to reproduce their choices.
        x = np.asarray(rows, dtype=np.float32).astype(np.float64)
        n_trees = self._left.shape[0]
        tree = np.broadcast_to(np.arange(n_trees), (len(x), n_trees))
        row = np.broadcast_to(np.arange(len(x))[:, None], (len(x), n_trees))
        node = np.zeros((len(x), n_trees), dtype=np.int64)
        for _ in range(self._depth):
            go_left = x[row, self._feature[tree, node]] <= self._threshold[tree, node]
            node = np.where(go_left, self._left[tree, node], self._right[tree, node])
        paths = self._path[tree, node].sum(axis=1)
        return np.asarray(2.0 ** (-paths / self._norm), dtype=np.float64)


class IsolationForestDetector(Detector):
    """Online Isolation Forest on [value, recent differences] rows of one series."""

    def __init__(
        self,
        window: int = 8,
        history: int = 256,
        refit_every: int = 128,
        min_fit: int = 64,
        n_estimators: int = 50,
        max_samples: int = 128,
        seed: int = 0,
    ) -> None:
        if window < 2:
            raise ValueError("window must be at least 2")
        if not 2 <= min_fit <= history:
            raise ValueError("min_fit must be within 2 .. history")
        if refit_every < 1 or n_estimators < 1 or max_samples < 2:
            raise ValueError("refit_every and n_estimators must be positive, max_samples at least 2")
        self.window = window
        self.history = history
        self.refit_every = refit_every
        self.min_fit = min_fit
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.seed = seed
        self._values: deque[float] = deque(maxlen=window)
        # Rows fitted on plus the rows since, so that restore can refit the very same forest.
        self._rows: deque[tuple[float, ...]] = deque(maxlen=history + refit_every)
        self._since_fit = 0
        self._forest: PackedForest | None = None

    def update(self, timestamp: float, value: float) -> float:
        return float(self.update_many(np.array([timestamp]), np.array([value]))[0])

    def update_many(self, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        scores = np.zeros(len(values), dtype=np.float64)
        pending: list[int] = []
        pending_rows: list[tuple[float, ...]] = []
        for i, raw in enumerate(values):
            value = float(raw)
            if not math.isfinite(value):
                continue
            self._values.append(value)
            if len(self._values) < self.window:
                continue
            row = self._row()
            if self._forest is not None:
                pending.append(i)
                pending_rows.append(row)
            self._rows.append(row)
            self._since_fit += 1
            if self._due():
                # Rows seen so far are scored by the forest they arrived under, before it is replaced.
                self._score_into(scores, pending, pending_rows)
                pending, pending_rows = [], []
                self._fit(list(self._rows))
                self._since_fit = 0
        self._score_into(scores, pending, pending_rows)
        return scores

    def _row(self) -> tuple[float, ...]:
        *before, value = self._values
        try:
            mean = math.fsum(before) / len(before)
        except OverflowError:
            # Values near the float limit: the sum overflows, the sum of the shares cannot.
            mean = math.fsum(v / len(before) for v in before)
        return (_bounded(value - before[-1]), _bounded(value - mean))

    def _due(self) -> bool:
        if self._forest is None:
            return len(self._rows) >= self.min_fit
        return self._since_fit >= self.refit_every

    def _fit(self, rows: list[tuple[float, ...]]) -> None:
        sample = np.array(rows[-self.history :], dtype=np.float64)
        forest = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=min(self.max_samples, len(sample)),
            random_state=self.seed,
        )
        self._forest = PackedForest(forest.fit(sample))

    def _score_into(self, scores: FloatArray, points: list[int], rows: list[tuple[float, ...]]) -> None:
        if not points or self._forest is None:
            return
        scores[points] = np.clip(self._forest.score(np.array(rows, dtype=np.float64)), 0.0, 1.0)

    def snapshot(self) -> State:
        return {
            "values": list(self._values),
            "rows": [list(row) for row in self._rows],
            "since_fit": self._since_fit,
            "fitted": self._forest is not None,
        }

    def restore(self, state: State) -> None:
        try:
            values = [float(v) for v in state["values"]]
            rows = [tuple(float(x) for x in row) for row in state["rows"]]
            since_fit = int(state["since_fit"])
            fitted = bool(state["fitted"])
        except (KeyError, TypeError, ValueError) as exc:
            raise IsolationForestStateError("not an isolation forest snapshot") from exc
        if len(values) > self.window or any(len(row) != 2 for row in rows):
            raise IsolationForestStateError("snapshot was taken with another window")
        if not 0 <= since_fit <= len(rows) or len(rows) > self.history + self.refit_every:
            raise IsolationForestStateError("snapshot history does not fit these parameters")
        self._values = deque(values, maxlen=self.window)
        self._rows = deque(rows, maxlen=self.history + self.refit_every)
        self._since_fit = since_fit
        self._forest = None
        if fitted:
            self._fit(rows[: len(rows) - since_fit])


def isolation_forest(**params: Any) -> IsolationForestDetector:
    return IsolationForestDetector(**params)


def isolation_forest_batch(capacity: int, **params: Any) -> PerSeriesBatch:
    return PerSeriesBatch(lambda: IsolationForestDetector(**params), capacity)
