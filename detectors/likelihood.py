"""Anomaly likelihood: turns a stream of raw anomaly scores into how unusual their recent level is for this series.

The idea is Numenta's (HTM anomaly likelihood): a noisy series keeps producing middling raw scores, a quiet one
almost none, so a raw score means little on its own. A short moving average of the raw scores is compared with the
long-run distribution of that average (an exponentially weighted mean and variance); the Gaussian upper-tail
probability ``q`` of the current average is reported on a log scale as ``r / (r + decades)`` with
``r = -log10(q)``, so the output stays below 1 and keeps ranking ever rarer levels (0.5 means a one-in-10^decades
level). ``LikelihoodKernel`` works on raw scores in place of values, one state per series like any other kernel.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from detectors.base import FloatArray
from detectors.vectorised import Kernel, SlotArrays
from detectors.zscore import ParameterError, check_fraction, check_positive

LN_10 = float(np.log(10.0))
# Logistic approximation of the standard normal CDF: Phi(z) ~ 1 / (1 + exp(-(A z + B z^3))), error below 2e-4;
# far in the tail it falls off more slowly than the true one, which only matters for ranking, and stays monotone.
_PHI_A = 1.5976
_PHI_B = 0.070566
# Spread floor of the long-run average: a series whose raw scores have been constant must not divide by zero.
MIN_STD = 1e-4


def log_tail(z: FloatArray, decades: float) -> FloatArray:
    """``r / (r + decades)`` with ``r = -log10(1 - Phi(z))``, computed without forming the tiny tail itself."""
    exponent = _PHI_A * z + _PHI_B * z * z * z
    rarity = np.logaddexp(0.0, exponent) / LN_10
    result: FloatArray = rarity / (rarity + decades)
    return result


class LikelihoodKernel(Kernel):
    """Post-processor of raw scores in [0, 1]; ``short_rate`` sets the short average, ``long_rate`` the long-run one."""

    def __init__(
        self, short_rate: float = 0.2, long_rate: float = 0.0005, warmup: int = 300, decades: float = 10.0
    ) -> None:
        check_fraction("short_rate", short_rate)
        check_fraction("long_rate", long_rate)
        check_positive("decades", decades)
        if warmup < 1:
            raise ParameterError(f"warmup must be at least 1, got {warmup}")
        self.short_rate = short_rate
        self.long_rate = long_rate
        self.warmup = warmup
        self.decades = decades
        # The count only matters until warm-up ends and 1/n falls below long_rate.
        self._n_cap = float(max(warmup, int(np.ceil(1.0 / long_rate))))

    @property
    def fields(self) -> tuple[str, ...]:
        return ("n", "short", "mean", "var")

    def initial(self) -> Mapping[str, float]:
        return {"n": 0.0, "short": 0.0, "mean": 0.0, "var": 0.0}

    def step(self, state: SlotArrays, timestamps: FloatArray, values: FloatArray) -> tuple[FloatArray, SlotArrays]:
        n = state["n"]
        short = state["short"] + self.short_rate * (values - state["short"])
        std = np.maximum(np.sqrt(state["var"]), MIN_STD)
        scores = np.where(n >= self.warmup, log_tail((short - state["mean"]) / std, self.decades), 0.0)
        rate = np.maximum(self.long_rate, 1.0 / (n + 1.0))
        delta = short - state["mean"]
        learned = {
            "n": np.minimum(n + 1.0, self._n_cap),
            "short": short,
            "mean": state["mean"] + rate * delta,
            "var": (1.0 - rate) * (state["var"] + rate * delta * delta),
        }
        return scores, learned
