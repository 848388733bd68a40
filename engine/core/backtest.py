"""Runs one detector over one recorded series, as it would have run live, so SREs can tune before deploying."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors import registry
from detectors.thresholds import ThresholdFilter

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class BacktestResult:
    detector: str
    threshold: float
    timestamps: FloatArray
    values: FloatArray
    scores: FloatArray
    detections: BoolArray

    @property
    def detection_count(self) -> int:
        return int(self.detections.sum())


def backtest(
    timestamps: FloatArray,
    values: FloatArray,
    *,
    detector: str,
    threshold: float | None = None,
    params: dict[str, Any] | None = None,
    cooldown_s: float = 0.0,
) -> BacktestResult:
    """Score every point in order with a fresh detector (no look-ahead) and threshold the scores."""
    kind = registry.get(detector)
    level = kind.default_threshold if threshold is None else threshold
    one = kind.make_one(**(params or {}))
    scores = np.fromiter(
        (one.update(float(t), float(v)) for t, v in zip(timestamps, values, strict=True)),
        dtype=np.float64,
        count=len(values),
    )
    gate = ThresholdFilter(level, cooldown_s=cooldown_s)
    gate.ensure_capacity(1)
    detections = gate.apply(np.zeros(len(values), dtype=np.int64), timestamps, scores)
    return BacktestResult(detector, level, timestamps, values, scores, detections)
