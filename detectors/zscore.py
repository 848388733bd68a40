"""The z-score family: how far a point lies from what the series has been doing, in units of its usual spread.

* ``EwmaKernel`` -- exponentially weighted mean and variance of the values.
* ``RobustKernel`` -- an online median and median absolute deviation, tracked by stochastic quantile steps, so a
  burst of outliers barely moves the baseline.
* ``SeasonalKernel`` -- an exponentially weighted mean and variance per hour-of-day bucket, next to a global one; the
  z-score comes from whichever of the two has had the smaller recent squared error, so a daily profile is used
  only where the data has one.

Each is a ``detectors.vectorised.Kernel`` (``KernelDetector`` and ``KernelBatch`` give the one-series and batch
shapes). A series scores 0 until ``warmup`` points have been seen. The z-score is mapped to [0, 1] as
``z^2 / (z^2 + z_half^2)``, so ``z_half`` is the distance that scores 0.5.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

import numpy as np

from detectors.base import BoolArray, FloatArray, IntArray
from detectors.vectorised import Kernel, KernelBatch, KernelDetector, SlotArrays, prefixed, prefixed_names

# The MAD of a normal distribution is this fraction of its standard deviation.
MAD_TO_STD = 1.4826
# ... and its mean absolute deviation this fraction: sqrt(pi / 2).
MEAN_ABS_TO_STD = 1.2533
HOURS_PER_DAY = 24
SECONDS_PER_HOUR = 3600.0


class ParameterError(ValueError):
    """Raised for a hyper-parameter outside its valid range."""


def check_fraction(name: str, value: float) -> None:
    """Raise ``ParameterError`` unless 0 < value <= 1."""
    if not 0.0 < value <= 1.0:
        raise ParameterError(f"{name} must be in (0, 1], got {value}")


def check_positive(name: str, value: float) -> None:
    """Raise ``ParameterError`` unless value > 0."""
    if not value > 0.0:
        raise ParameterError(f"{name} must be positive, got {value}")


def squash(z: FloatArray, z_half: float) -> FloatArray:
    """Map a non-negative distance to [0, 1): 0 stays 0, ``z_half`` gives 0.5."""
    z2 = z * z
    result: FloatArray = z2 / (z2 + z_half * z_half)
    return result


def spread_floor(level: FloatArray, relative: float) -> FloatArray:
    """The smallest spread to divide by: a flat series would otherwise turn the tiniest change into infinity."""
    result: FloatArray = relative * np.abs(level) + 1e-9
    return result


class EwmaKernel(Kernel):
    """Exponentially weighted mean and variance; the first points are averaged equally until 1/n drops below alpha.

    With ``clip`` set, a point past warm-up moves the mean and variance as if it lay at most ``clip`` standard
    deviations out: an anomaly then barely widens the spread it is measured against, so its continuation still
    stands out, while a lasting shift is followed at ``alpha * clip`` deviations a point.
    """

    def __init__(
        self,
        alpha: float = 0.01,
        warmup: int = 30,
        z_half: float = 4.0,
        min_rel_std: float = 1e-3,
        clip: float | None = None,
    ) -> None:
        check_fraction("alpha", alpha)
        check_positive("z_half", z_half)
        if clip is not None:
            check_positive("clip", clip)
        if warmup < 1:
            raise ParameterError(f"warmup must be at least 1, got {warmup}")
        self.clip = clip
        self.alpha = alpha
        self.warmup = warmup
        self.z_half = z_half
        self.min_rel_std = min_rel_std
        # The count only matters until warm-up ends and 1/n falls below alpha; capping it keeps snapshots small.
        self._n_cap = float(max(warmup, int(np.ceil(1.0 / alpha))))

    @property
    def fields(self) -> tuple[str, ...]:
        return ("n", "mean", "var")

    def initial(self) -> Mapping[str, float]:
        return {"n": 0.0, "mean": 0.0, "var": 0.0}

    def distance(self, state: SlotArrays, values: FloatArray) -> FloatArray:
        """|value - mean| in standard deviations (before warm-up too)."""
        std = np.maximum(np.sqrt(state["var"]), spread_floor(state["mean"], self.min_rel_std))
        result: FloatArray = np.abs(values - state["mean"]) / std
        return result

    def learn(self, state: SlotArrays, values: FloatArray) -> SlotArrays:
        """The state after learning one value per series."""
        n = state["n"]
        rate = np.maximum(self.alpha, 1.0 / (n + 1.0))
        delta = values - state["mean"]
        if self.clip is not None:
            limit = self.clip * np.maximum(np.sqrt(state["var"]), spread_floor(state["mean"], self.min_rel_std))
            delta = np.where(n >= self.warmup, np.clip(delta, -limit, limit), delta)
        return {
            "n": np.minimum(n + 1.0, self._n_cap),
            "mean": state["mean"] + rate * delta,
            "var": (1.0 - rate) * (state["var"] + rate * delta * delta),
        }

    def step(self, state: SlotArrays, timestamps: FloatArray, values: FloatArray) -> tuple[FloatArray, SlotArrays]:
        scores = np.where(state["n"] >= self.warmup, squash(self.distance(state, values), self.z_half), 0.0)
        return scores, self.learn(state, values)


class RobustKernel(Kernel):
    """Median and MAD tracked online: each point nudges the median by ``rate`` MADs towards itself, and grows or
    shrinks the MAD by the factor ``1 + rate`` depending on whether it lies outside or inside it.

    During warm-up the running mean and mean absolute deviation stand in, so the trackers start near the truth.
    Series of repeated values (counts, flat lines with blips) have a MAD of 0, so the spread is also floored at
    half the exponentially weighted mean absolute deviation (in standard deviations).
    """

    def __init__(self, rate: float = 0.05, warmup: int = 30, z_half: float = 4.0, min_rel_std: float = 1e-3) -> None:
        check_fraction("rate", rate)
        check_positive("z_half", z_half)
        if warmup < 1:
            raise ParameterError(f"warmup must be at least 1, got {warmup}")
        self.rate = rate
        self.warmup = warmup
        self.z_half = z_half
        self.min_rel_std = min_rel_std

    @property
    def fields(self) -> tuple[str, ...]:
        return ("n", "median", "mad", "mean_abs")

    def initial(self) -> Mapping[str, float]:
        return {"n": 0.0, "median": 0.0, "mad": 0.0, "mean_abs": 0.0}

    def distance(self, state: SlotArrays, values: FloatArray) -> FloatArray:
        """|value - median| in robust standard deviations."""
        spread = np.maximum(MAD_TO_STD * state["mad"], MEAN_ABS_TO_STD * 0.5 * state["mean_abs"])
        spread = np.maximum(spread, spread_floor(state["median"], self.min_rel_std))
        result: FloatArray = np.abs(values - state["median"]) / spread
        return result

    def learn(self, state: SlotArrays, values: FloatArray) -> SlotArrays:
        """The state after learning one value per series."""
        n = state["n"]
        median, mad = state["median"], state["mad"]
        deviation = values - median
        distance = np.abs(deviation)
        warming = n < self.warmup
        # Warm-up: cumulative mean and mean absolute deviation (about 0.85 MADs for normal data, close enough).
        weight = 1.0 / (n + 1.0)
        warm_median = median + weight * deviation
        warm_mad = mad + weight * (distance - mad)
        floor = spread_floor(median, self.min_rel_std)
        step = self.rate * np.maximum(mad, floor)
        tracked_median = median + np.where(deviation > 0.0, step, np.where(deviation < 0.0, -step, 0.0))
        grown = np.maximum(mad, floor) * (1.0 + self.rate)
        tracked_mad = np.where(distance > mad, grown, mad / (1.0 + self.rate))
        abs_rate = np.maximum(self.rate, weight)
        return {
            "n": np.minimum(n + 1.0, self.warmup),
            "median": np.where(warming, warm_median, tracked_median),
            "mad": np.where(warming, warm_mad, tracked_mad),
            "mean_abs": state["mean_abs"] + abs_rate * (distance - state["mean_abs"]),
        }

    def step(self, state: SlotArrays, timestamps: FloatArray, values: FloatArray) -> tuple[FloatArray, SlotArrays]:
        scores = np.where(state["n"] >= self.warmup, squash(self.distance(state, values), self.z_half), 0.0)
        return scores, self.learn(state, values)


class SeasonalKernel(Kernel):
    """An EWMA baseline next to an hour-of-day profile (one exponentially weighted mean per UTC hour).

    Both models' recent squared errors are tracked; the z-score is taken against the profile, in units of its own
    root mean squared error, when that error is the smaller and every hour of the day has been seen
    ``season_warmup`` times, and against the EWMA otherwise. Series without a daily rhythm keep the EWMA.
    """

    def __init__(
        self,
        alpha: float = 0.003,
        season_alpha: float = 0.05,
        error_rate: float = 0.01,
        warmup: int = 30,
        season_warmup: int = 6,
        z_half: float = 6.0,
        min_rel_std: float = 1e-3,
        clip: float | None = None,
    ) -> None:
        check_fraction("season_alpha", season_alpha)
        check_fraction("error_rate", error_rate)
        self.global_ = EwmaKernel(alpha=alpha, warmup=warmup, z_half=z_half, min_rel_std=min_rel_std, clip=clip)
        self.season_alpha = season_alpha
        self.error_rate = error_rate
        self.season_warmup = season_warmup
        self._season_cap = float(max(season_warmup, int(np.ceil(1.0 / season_alpha))))

    @property
    def fields(self) -> tuple[str, ...]:
        return (*self.global_.fields, "global_error", "season_error", "hours_seen")

    def initial(self) -> Mapping[str, float]:
        return {**self.global_.initial(), "global_error": 0.0, "season_error": 0.0, "hours_seen": 0.0}

    @property
    def table_fields(self) -> tuple[str, ...]:
        return ("hour_n", "hour_mean")

    @property
    def buckets(self) -> int:
        return HOURS_PER_DAY

    def bucket_of(self, timestamps: FloatArray) -> IntArray:
        hours: IntArray = (np.floor(timestamps / SECONDS_PER_HOUR).astype(np.int64)) % HOURS_PER_DAY
        return hours

    def table_initial(self) -> Mapping[str, float]:
        return {"hour_n": 0.0, "hour_mean": 0.0}

    def measure(self, state: SlotArrays, values: FloatArray) -> tuple[FloatArray, BoolArray, SlotArrays]:
        """The squared distance of each value from the chosen model, whether the series is past warm-up, and the
        new state; ``step`` squashes the distance into a score, other kernels build on it."""
        level = {name: state[name] for name in self.global_.fields}
        hour_n, hour_mean = state["hour_n"], state["hour_mean"]
        global_error, season_error = state["global_error"], state["season_error"]
        global_residual = values - level["mean"]
        season_residual = np.where(hour_n > 0.0, values - hour_mean, global_residual)
        # hours_seen counts the hours of the day met at least season_warmup times.
        ripe = hour_n >= self.season_warmup
        use_season = (state["hours_seen"] >= HOURS_PER_DAY) & (season_error < global_error)
        # The chosen model's residual, squared spread and level; squared distances spare a square root per point.
        residual = np.where(use_season, season_residual, global_residual)
        spread2 = np.where(use_season, season_error, level["var"])
        floor = spread_floor(np.where(use_season, hour_mean, level["mean"]), self.global_.min_rel_std)
        z2: FloatArray = residual * residual / np.maximum(spread2, floor * floor)
        warm: BoolArray = level["n"] >= self.global_.warmup
        learned = self.global_.learn(level, values)
        rate = np.maximum(self.error_rate, 1.0 / (level["n"] + 1.0))
        global_square, season_square = global_residual * global_residual, season_residual * season_residual
        if self.global_.clip is not None:
            # As the EWMA's variance, the models' errors learn an outlier as if it lay ``clip`` spreads out.
            clip2 = self.global_.clip * self.global_.clip
            floor2 = floor * floor
            global_square = np.where(
                warm, np.minimum(global_square, clip2 * np.maximum(global_error, floor2)), global_square
            )
            season_square = np.where(
                warm, np.minimum(season_square, clip2 * np.maximum(season_error, floor2)), season_square
            )
        hour_rate = np.maximum(self.season_alpha, 1.0 / (hour_n + 1.0))
        new_hour_n = np.minimum(hour_n + 1.0, self._season_cap)
        learned.update(
            {
                "global_error": global_error + rate * (global_square - global_error),
                "season_error": season_error + rate * (season_square - season_error),
                "hours_seen": state["hours_seen"] + ((new_hour_n >= self.season_warmup) & ~ripe),
                "hour_n": new_hour_n,
                "hour_mean": hour_mean + hour_rate * (values - hour_mean),
            }
        )
        return z2, warm, learned

    def step(self, state: SlotArrays, timestamps: FloatArray, values: FloatArray) -> tuple[FloatArray, SlotArrays]:
        z2, warm, learned = self.measure(state, values)
        half2 = self.global_.z_half * self.global_.z_half
        return np.where(warm, z2 / (z2 + half2), 0.0), learned


class OnSeasonalLevel(Kernel, abc.ABC):
    """A composite kernel built on a ``SeasonalKernel`` part, ``level``, whose fields it keeps prefixed ``level.``:
    the part's hour-of-day tables are the composite's tables."""

    def __init__(self, level: SeasonalKernel) -> None:
        self.level = level
        self._level_field_names = prefixed_names("level", level.fields)
        self._level_table_names = prefixed_names("level", level.table_fields)
        self._level_names = self._level_field_names + self._level_table_names
        self._table_fields = tuple(name for _, name in self._level_table_names)

    @property
    def table_fields(self) -> tuple[str, ...]:
        return self._table_fields

    @property
    def buckets(self) -> int:
        return self.level.buckets

    def bucket_of(self, timestamps: FloatArray) -> IntArray:
        return self.level.bucket_of(timestamps)

    def table_initial(self) -> Mapping[str, float]:
        return prefixed(self.level.table_initial(), self._level_table_names)


def ewma(**params: Any) -> KernelDetector:
    """One series, ``EwmaKernel``."""
    return KernelDetector(EwmaKernel(**params))


def ewma_batch(capacity: int, **params: Any) -> KernelBatch:
    """Many series, ``EwmaKernel``."""
    return KernelBatch(EwmaKernel(**params), capacity)


def robust_zscore(**params: Any) -> KernelDetector:
    """One series, ``RobustKernel``."""
    return KernelDetector(RobustKernel(**params))


def robust_zscore_batch(capacity: int, **params: Any) -> KernelBatch:
    """Many series, ``RobustKernel``."""
    return KernelBatch(RobustKernel(**params), capacity)


def seasonal_zscore(**params: Any) -> KernelDetector:
    """One series, ``SeasonalKernel``."""
    return KernelDetector(SeasonalKernel(**params))


def seasonal_zscore_batch(capacity: int, **params: Any) -> KernelBatch:
    """Many series, ``SeasonalKernel``."""
    return KernelBatch(SeasonalKernel(**params), capacity)
