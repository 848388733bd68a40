"""The rarity detector: detects spikes, shifts and leaks once, stays quiet on noise of any shape, rates a distance by
how rare it is for its own series, and is exact across shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from detectors import registry
from detectors.base import FloatArray
from detectors.ensemble import RarityKernel
from detectors.nab.corpus import load_corpus
from detectors.seasonal_likelihood import SeasonalLikelihoodKernel
from detectors.vectorised import Kernel, KernelBatch, KernelDetector, StateFormatError
from detectors.zscore import ParameterError

STEP_S = 300.0
THRESHOLD = registry.get("rarity").default_threshold
NAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab"


def seasonal(n: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    days = np.arange(n) * STEP_S / 86_400.0
    result: FloatArray = 100.0 + 10.0 * np.sin(2 * np.pi * days) + rng.normal(0.0, 1.0, n)
    return result


def scores_of(values: FloatArray, detector_name: str = "rarity", **params: float) -> FloatArray:
    detector = registry.build_one(detector_name, **params)
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


@pytest.mark.parametrize(("name", "kernel"), [("rarity", RarityKernel), ("default", SeasonalLikelihoodKernel)])
def test_batch_equals_one_point_and_restore_continues(name: str, kernel: Callable[[], Kernel]) -> None:
    series = [seasonal(1500, seed=10 + k) * (k + 1) for k in range(4)]
    for k, values in enumerate(series):
        values[1000 + 50 * k] += 40.0 * (k + 1)
        values[100 + k] = np.nan
    expected = [scores_of(values, name) for values in series]
    batch = KernelBatch(kernel(), 4)
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
    restored = KernelDetector(kernel())
    restored.restore(state)
    tail = [restored.update(r * STEP_S, series[3][r]) for r in range(603, 1500)]
    np.testing.assert_array_equal(tail, expected[3][603:])


def test_bad_parameters_are_refused() -> None:
    for bad in ({"fast_weight": 2.0}, {"peak_decay": 0.0}, {"memory": 1.0}, {"tail_index": 0.0}, {"run_rate": 0.0}):
        with pytest.raises(ParameterError):
            RarityKernel(**bad)


@pytest.mark.parametrize(
    "noise",
    [
        lambda rng: rng.poisson(2.0, 20_000).astype(np.float64),
        lambda rng: rng.exponential(1.0, 20_000),
        lambda rng: np.round(rng.normal(50.0, 0.4, 20_000)),
    ],
    ids=["small counts", "exponential", "rounded"],
)
def test_noise_of_other_shapes_stays_below_the_default_threshold(noise: Any) -> None:
    assert scores_of(noise(np.random.default_rng(3))).max() < THRESHOLD


def test_a_distance_is_rated_against_its_own_series() -> None:
    # The same jump, 8 units on noise of spread 1: rare on Gaussian noise, ordinary on noise whose bursts reach it
    # every few hundred points.
    rng = np.random.default_rng(4)
    smooth = rng.normal(0.0, 1.0, 4000)
    bursty = rng.normal(0.0, 1.0, 4000)
    bursty[rng.choice(4000, 40, replace=False)] += rng.choice([-10.0, 10.0], 40)
    smooth[3500] = bursty[3500] = 8.0
    assert scores_of(smooth)[3500] >= THRESHOLD
    assert scores_of(bursty)[3500] < THRESHOLD


@pytest.mark.parametrize("seed", [5, 6, 7, 8])
def test_a_growing_leak_is_detected_as_it_starts(seed: int) -> None:
    # GPU memory climbing from its usual level, fast at first and then slower: the detector must not learn the
    # leak as normal while it grows.
    values = 0.6 + np.random.default_rng(seed).normal(0.0, 0.006, 2400)
    values[2000:2060] += 0.2 * np.sqrt(np.arange(1, 61) / 60)
    fired = np.flatnonzero(scores_of(values) >= THRESHOLD)
    assert len(fired) >= 1
    assert 2000 <= fired[0] <= 2005


def test_state_fits_in_four_kilobytes_and_stays_finite_over_long_runs() -> None:
    # A short memory makes the counts' weight pass its rescaling point within the run.
    detector = registry.build_one("rarity", memory=20.0)
    rng = np.random.default_rng(6)
    noise = [detector.update(i * STEP_S, float(rng.normal())) for i in range(6000)]
    state = detector.snapshot()
    assert len(json.dumps(state)) <= 4096
    assert all(np.isfinite(value).all() for value in state.values())
    assert state["rarity.weight"] < 1e100
    assert detector.update(6000 * STEP_S, 50.0) > max(noise)


def test_a_snapshot_of_another_layout_is_refused() -> None:
    detector = KernelDetector(RarityKernel())
    with pytest.raises(StateFormatError, match="expected state fields"):
        detector.restore({"peak": 0.0, "level.n": 3.0})


@pytest.mark.skipif(not NAB.is_dir(), reason="the NAB corpus is not in ../shared/datasets/nab")
def test_nab_ambient_temperature_windows_score_above_almost_every_other_row() -> None:
    corpus = load_corpus(NAB)
    file = next(f for f in corpus.files if f.key == "realKnownCause/ambient_temperature_system_failure.csv")
    detector = registry.build_one("rarity")
    scores = np.array([detector.update(t, v) for t, v in zip(file.timestamps, file.values, strict=True)])
    in_windows = np.zeros(file.n_rows, dtype=np.bool_)
    for window in file.windows:
        in_windows[window.start : window.end + 1] = True
    assert scores[in_windows].max() > np.quantile(scores[~in_windows], 0.999)
