"""The default detector (detectors/seasonal_likelihood.py): detects spikes and shifts once, stays quiet on noise,
and is exact across shapes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detectors import registry
from detectors.base import FloatArray
from detectors.nab.corpus import load_corpus
from detectors.seasonal_likelihood import SeasonalLikelihoodKernel as DefaultKernel
from detectors.vectorised import KernelBatch, KernelDetector
from detectors.zscore import ParameterError

STEP_S = 300.0
THRESHOLD = registry.get("default").default_threshold
NAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab"


def seasonal(n: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    days = np.arange(n) * STEP_S / 86_400.0
    result: FloatArray = 100.0 + 10.0 * np.sin(2 * np.pi * days) + rng.normal(0.0, 1.0, n)
    return result


def scores_of(values: FloatArray, **params: float) -> FloatArray:
    detector = registry.build_one("default", **params)
    return np.array([detector.update(i * STEP_S, v) for i, v in enumerate(values)])


def test_a_spike_fires_once() -> None:
    values = seasonal(8 * 288, seed=0)
    values[2000] += 25.0
    fired = np.flatnonzero(scores_of(values) >= THRESHOLD)
    assert fired.tolist() == [2000]


def test_a_level_shift_fires_on_arrival_and_not_on_every_later_point() -> None:
    values = seasonal(8 * 288, seed=1)
    values[2000:] += 30.0
    fired = np.flatnonzero(scores_of(values) >= THRESHOLD)
    assert len(fired) >= 1
    assert 2000 <= fired[0] <= 2002
    assert len(fired) <= 3


def test_noise_stays_below_the_default_threshold() -> None:
    values = np.random.default_rng(2).normal(5.0, 1.0, 10_000)
    assert scores_of(values).max() < THRESHOLD


def test_batch_equals_one_point_and_restore_continues() -> None:
    series = [seasonal(1500, seed=10 + k) * (k + 1) for k in range(4)]
    for k, values in enumerate(series):
        values[1000 + 50 * k] += 40.0 * (k + 1)
        values[100 + k] = np.nan
    expected = [scores_of(values) for values in series]
    batch = KernelBatch(DefaultKernel(), 4)
    # Each batch holds three consecutive points of every series, so slots repeat within a batch.
    for start in range(0, 1500, 3):
        rows = np.arange(start, min(start + 3, 1500))
        slots = np.tile(np.arange(4), len(rows))
        stamps = np.repeat(rows * STEP_S, 4)
        values = np.array([series[k][r] for r, k in zip(np.repeat(rows, 4), slots, strict=True)])
        got = batch.update_batch(slots, stamps, values)
        for k in range(4):
            np.testing.assert_array_equal(got[slots == k], expected[k][rows])
        if start == 600:
            state = json.loads(json.dumps(batch.snapshot_slot(3)))
    restored = KernelDetector(DefaultKernel())
    restored.restore(state)
    tail = [restored.update(r * STEP_S, series[3][r]) for r in range(603, 1500)]
    np.testing.assert_array_equal(tail, expected[3][603:])


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError):
        DefaultKernel(likelihood_weight=2.0)
    with pytest.raises(ParameterError):
        DefaultKernel(peak_decay=0.0)


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB corpus is not in ../shared/datasets/nab")
def test_nab_ambient_temperature_windows_score_above_almost_every_other_row() -> None:
    corpus = load_corpus(NAB)
    file = next(f for f in corpus.files if f.key == "realKnownCause/ambient_temperature_system_failure.csv")
    detector = registry.build_one("default")
    scores = np.array([detector.update(t, v) for t, v in zip(file.timestamps, file.values, strict=True)])
    in_windows = np.zeros(file.n_rows, dtype=np.bool_)
    for window in file.windows:
        in_windows[window.start : window.end + 1] = True
    assert scores[in_windows].max() > np.quantile(scores[~in_windows], 0.999)
