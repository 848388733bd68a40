"""The ``rarity`` detector: distances from a seasonal-aware baseline and from a fast one, rated by how rare they are
for the series, with a peak gate.

Per point, three distances (z-scores), each in units of its model's usual error:

* ``point``: from an EWMA baseline, or from an hour-of-day profile where that explains the series better
  (``detectors.zscore.SeasonalKernel``): spikes, dips, the onset of a shift, a day that breaks the daily rhythm;
* ``run``: a short exponentially weighted average (rate ``run_rate``) of the point distances (as ``log(1 + z)``):
  a stretch of moderately unusual points that no single one shows (a change in level or spread);
* ``fast``: from a fast EWMA (``fast_alpha``): a jump on a series whose slow baseline is still catching up with an
  earlier change, or that wanders too much for it.

The baselines learn a point past warm-up as if it lay at most ``clip`` spreads out, so an anomaly hardly widens the
spread it is measured against. Each distance is rated by its rarity among the series' own recent distances
(``detectors.rarity``), in decades; the fast one counts ``fast_weight`` of its decades, the run one ``run_weight``.
The rarest of the three is the raw score, ``r / (r + decades)``, so 0.5 means a distance of one in 10^decades (10^4
by default; a series' noise stays near one in ``memory``). A point distance is learned ``delay`` points after it is
rated, so a leak is rated against a history without it, and a distance rated at or past 0.5 (times
``learn_below``) counts ``alarm_weight`` of a point, so one incident does not make the next like it look ordinary.
The peak gate then lets a score through only where it beats the series' recent peak (which fades by ``peak_decay``
per point); other scores are scaled by ``gated_factor``. So one anomaly gives one or a few detections, not a run of
them, and its first point carries it. Everything is online, and one parameter set serves every series; the
parameters were chosen on NAB together with generated KPI corpora of several shapes (``benchmarks.kpi_corpus``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from detectors.base import FloatArray
from detectors.rarity import BINS, RarityScale, RarityState
from detectors.vectorised import KernelBatch, KernelDetector, SlotArrays, part_state, prefixed, prefixed_names
from detectors.zscore import EwmaKernel, OnSeasonalLevel, ParameterError, SeasonalKernel, check_fraction, check_positive

# The parts of the rarity state, as fields or field groups named rarity.<part>.
_RARITY_PARTS = ("weight", "total", "cursor", "queued", "bins", "tail", "queue")
# The distances rated, in the order of the rarity state's channels.
CHANNELS = ("point", "run", "fast")


class RarityKernel(OnSeasonalLevel):
    """The ``rarity`` detector as one kernel: its parts' states side by side (prefixed ``level.``, ``fast.`` and
    ``rarity.``), plus the run average, the count of rated points and the recent peak."""

    def __init__(
        self,
        *,
        alpha: float = 0.01,
        season_alpha: float = 0.05,
        error_rate: float = 0.01,
        warmup: int = 30,
        season_warmup: int = 6,
        clip: float = 3.0,
        fast_alpha: float = 0.1,
        run_rate: float = 0.1,
        memory: float = 5000.0,
        prior: float = 1.0,
        tail_from: float = 2.0,
        tail_index: float = 2.0,
        tail_prior: float = 5.0,
        delay: int = 2,
        learn_below: float = 1.0,
        alarm_weight: float = 0.1,
        run_weight: float = 1.0,
        fast_weight: float = 0.8,
        decades: float = 4.0,
        rarity_warmup: int = 30,
        peak_decay: float = 0.99,
        gated_factor: float = 0.0,
    ) -> None:
        for name, value in (("run_weight", run_weight), ("fast_weight", fast_weight), ("gated_factor", gated_factor)):
            if not 0.0 <= value <= 1.0:
                raise ParameterError(f"{name} must be in [0, 1], got {value}")
        check_fraction("run_rate", run_rate)
        check_fraction("peak_decay", peak_decay)
        check_positive("decades", decades)
        if rarity_warmup < 1:
            raise ParameterError(f"rarity_warmup must be at least 1, got {rarity_warmup}")
        super().__init__(
            SeasonalKernel(
                alpha=alpha,
                season_alpha=season_alpha,
                error_rate=error_rate,
                warmup=warmup,
                season_warmup=season_warmup,
                clip=clip,
            )
        )
        self.fast = EwmaKernel(alpha=fast_alpha, warmup=warmup)
        self.rarity = RarityScale(
            len(CHANNELS),
            memory=memory,
            prior=prior,
            tail_from=tail_from,
            tail_index=tail_index,
            tail_prior=tail_prior,
            delay=delay,
            delayed=(CHANNELS.index("point"),),
            learn_below=decades * learn_below,
            alarm_weight=alarm_weight,
        )
        self.run_rate = run_rate
        self.weights = np.array([1.0, run_weight, fast_weight])[:, None]
        self.decades = decades
        self.rarity_warmup = float(rarity_warmup)
        self.peak_decay = peak_decay
        self.gated_factor = gated_factor
        self._fast_names = prefixed_names("fast", self.fast.fields)
        bins = tuple(f"rarity.{channel}{k}" for channel in CHANNELS for k in range(BINS))
        tail = tuple(f"rarity.{channel}_{part}" for channel in CHANNELS for part in ("excess_n", "excess_sum"))
        queue = tuple(f"rarity.point_queue{k}" for k in range(delay))
        self._fields = (
            "peak",
            "run",
            "rated",
            *(prefixed for _, prefixed in self._level_field_names),
            *(prefixed for _, prefixed in self._fast_names),
            "rarity.weight",
            "rarity.total",
            "rarity.cursor",
            "rarity.queued",
            *bins,
            *tail,
            *queue,
        )
        first_bin = self._fields.index(bins[0])
        self._groups = {
            "rarity.bins": (first_bin, first_bin + len(bins)),
            "rarity.tail": (first_bin + len(bins), first_bin + len(bins) + len(tail)),
            "rarity.queue": (first_bin + len(bins) + len(tail), len(self._fields)),
        }

    @property
    def fields(self) -> tuple[str, ...]:
        return self._fields

    @property
    def field_groups(self) -> Mapping[str, tuple[int, int]]:
        return self._groups

    def initial(self) -> Mapping[str, float]:
        fresh = dict.fromkeys(self._fields, 0.0)
        fresh.update(prefixed(self.level.initial(), self._level_field_names))
        fresh.update(prefixed(self.fast.initial(), self._fast_names))
        fresh["rarity.weight"] = 1.0
        return fresh

    def step(self, state: SlotArrays, timestamps: FloatArray, values: FloatArray) -> tuple[FloatArray, SlotArrays]:
        z2, warm, level = self.level.measure(part_state(state, self._level_names), values)
        fast_state = part_state(state, self._fast_names)
        point = np.log1p(np.sqrt(z2))
        rated = state["rated"]
        # The run average starts at the first rated point (before it, the baseline's early distances mean little).
        run = np.where(rated > 0.0, state["run"] + self.run_rate * (point - state["run"]), point)
        distances = np.stack([point, run, np.log1p(self.fast.distance(fast_state, values))])
        before = RarityState(*(state[f"rarity.{name}"] for name in _RARITY_PARTS))
        decades, after = self.rarity.rate(before, distances, warm)
        rarest = (self.weights * decades).max(axis=0)
        raw = np.where(rated >= self.rarity_warmup, rarest / (rarest + self.decades), 0.0)
        peak = state["peak"]
        scores = np.where(raw > peak, raw, self.gated_factor * raw)
        learned: SlotArrays = {
            "peak": np.maximum(self.peak_decay * peak, raw),
            "run": np.where(warm, run, state["run"]),
            "rated": np.where(warm, np.minimum(rated + 1.0, self.rarity_warmup), rated),
            **prefixed(level, self._level_names),
            **prefixed(self.fast.learn(fast_state, values), self._fast_names),
            **{f"rarity.{name}": getattr(after, name) for name in _RARITY_PARTS},
        }
        return scores, learned


def rarity(**params: Any) -> KernelDetector:
    """One series, the ``rarity`` detector."""
    return KernelDetector(RarityKernel(**params))


def rarity_batch(capacity: int, **params: Any) -> KernelBatch:
    """Many series, the ``rarity`` detector."""
    return KernelBatch(RarityKernel(**params), capacity)
