"""The z-score family: detects spikes and shifts in noisy seasonal data, stays quiet on noise, and its batch and
one-point shapes agree exactly, including across snapshot and restore."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest

from detectors.base import FloatArray
from detectors.vectorised import Kernel, KernelBatch, KernelDetector, StateFormatError, occurrence_rank
from detectors.zscore import EwmaKernel, ParameterError, RobustKernel, SeasonalKernel

KERNELS: list[Callable[..., Kernel]] = [EwmaKernel, RobustKernel, SeasonalKernel]
STEP_S = 300.0


def seasonal(n: int, seed: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    days = np.arange(n) * STEP_S / 86_400.0
    result: FloatArray = 50.0 + 5.0 * np.sin(2 * np.pi * days) + rng.normal(0.0, 1.0, n)
    return result


def one_point_scores(kernel: Kernel, values: FloatArray) -> FloatArray:
    detector = KernelDetector(kernel)
    return np.array([detector.update(i * STEP_S, value) for i, value in enumerate(values)])


@pytest.mark.parametrize("make", KERNELS)
def test_a_spike_in_a_seasonal_series_scores_highest(make: Callable[..., Kernel]) -> None:
    values = seasonal(3000, seed=1)
    values[2500] += 30.0
    scores = one_point_scores(make(), values)
    assert int(np.argmax(scores)) == 2500
    assert scores[2500] > 0.7


@pytest.mark.parametrize("make", KERNELS)
def test_a_level_shift_is_detected_on_arrival(make: Callable[..., Kernel]) -> None:
    values = seasonal(3000, seed=2)
    values[2000:] += 20.0
    scores = one_point_scores(make(), values)
    assert scores[2000] > 0.7
    assert scores[2000] > scores[:2000].max()


@pytest.mark.parametrize("make", KERNELS)
def test_pure_noise_stays_quiet(make: Callable[..., Kernel]) -> None:
    values = np.random.default_rng(3).normal(10.0, 2.0, 5000)
    scores = one_point_scores(make(), values)
    assert scores.max() < 0.7
    assert np.mean(scores > 0.5) < 0.002


@pytest.mark.parametrize("make", KERNELS)
def test_warm_up_scores_zero(make: Callable[..., Kernel]) -> None:
    values = np.random.default_rng(4).normal(0.0, 1.0, 100)
    values[5] = 1e6
    scores = one_point_scores(make(warmup=30), values)
    assert np.all(scores[:30] == 0.0)
    assert np.any(scores[30:] > 0.0)


@pytest.mark.parametrize("make", KERNELS)
def test_batch_equals_one_point_bit_for_bit(make: Callable[..., Kernel]) -> None:
    rng = np.random.default_rng(5)
    n_series, per_series = 7, 400
    series = [seasonal(per_series, seed=10 + k) * (k + 1) for k in range(n_series)]
    for k, values in enumerate(series):
        values[rng.integers(0, per_series, 5)] = np.nan
        values[300 + k] += 40.0
    expected = [one_point_scores(make(), values) for values in series]
    # Interleave the series in a shuffled order that keeps each series' own points in order.
    owners = rng.permutation(np.repeat(np.arange(n_series), per_series))
    position = occurrence_rank(owners)
    values_flat = np.array([series[o][p] for o, p in zip(owners, position, strict=True)])
    stamps = position.astype(np.float64) * STEP_S
    batch = KernelBatch(make(), n_series)
    scores = np.concatenate(
        [
            batch.update_batch(owners[i : i + 997], stamps[i : i + 997], values_flat[i : i + 997])
            for i in range(0, len(owners), 997)
        ]
    )
    for k in range(n_series):
        np.testing.assert_array_equal(scores[owners == k], expected[k])
    assert np.any(scores > 0.5)


@pytest.mark.parametrize("make", KERNELS)
def test_snapshot_and_restore_continue_identically(make: Callable[..., Kernel]) -> None:
    values = seasonal(1200, seed=6)
    values[900] += 20.0
    original = KernelDetector(make())
    head = [original.update(i * STEP_S, v) for i, v in enumerate(values[:600])]
    snapshot = json.loads(json.dumps(original.snapshot()))
    restored = KernelDetector(make())
    restored.restore(snapshot)
    batch = KernelBatch(make(), 3)
    batch.restore_slot(2, snapshot)
    tail = [original.update((600 + i) * STEP_S, v) for i, v in enumerate(values[600:])]
    assert [restored.update((600 + i) * STEP_S, v) for i, v in enumerate(values[600:])] == tail
    slots = np.full(600, 2)
    np.testing.assert_array_equal(batch.update_batch(slots, np.arange(600.0, 1200.0) * STEP_S, values[600:]), tail)
    assert max(head) < max(tail)


def test_reset_slot_forgets_and_other_slots_are_untouched() -> None:
    batch = KernelBatch(EwmaKernel(), 2)
    values = seasonal(200, seed=7)
    batch.update_batch(
        np.r_[np.zeros(200, dtype=np.int64), np.ones(200, dtype=np.int64)], np.arange(400.0), np.r_[values, values]
    )
    kept = batch.snapshot_slot(1)
    batch.reset_slot(0)
    assert batch.snapshot_slot(0) == dict(EwmaKernel().initial())
    assert batch.snapshot_slot(1) == kept


def test_restore_rejects_a_foreign_state() -> None:
    detector = KernelDetector(EwmaKernel())
    with pytest.raises(StateFormatError):
        detector.restore({"n": 1.0, "median": 0.0, "mad": 1.0})
    with pytest.raises(StateFormatError):
        detector.restore({"n": 1.0, "mean": float("nan"), "var": 1.0})


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError):
        EwmaKernel(alpha=0.0)
    with pytest.raises(ParameterError):
        RobustKernel(rate=1.5)
    with pytest.raises(ParameterError):
        EwmaKernel(warmup=0)


def test_batch_refuses_slots_beyond_capacity() -> None:
    batch = KernelBatch(EwmaKernel(), 2)
    with pytest.raises(IndexError):
        batch.update_batch(np.array([2]), np.array([0.0]), np.array([1.0]))


def test_occurrence_rank_counts_earlier_points_of_the_same_slot() -> None:
    np.testing.assert_array_equal(occurrence_rank(np.array([3, 1, 3, 3, 1, 0])), [0, 0, 1, 2, 1, 0])


def test_the_seasonal_profile_catches_what_the_daily_swing_hides() -> None:
    rng = np.random.default_rng(8)
    n = 12 * 288
    days = np.arange(n) * STEP_S / 86_400.0
    values = 50.0 + 20.0 * np.sin(2 * np.pi * days) + rng.normal(0.0, 1.0, n)
    # At the trough of the last day, a value that is ordinary at noon but eight sigmas off for the hour.
    trough = 11 * 288 + 216
    values[trough] += 25.0
    seasonal = one_point_scores(SeasonalKernel(), values)
    flat = one_point_scores(EwmaKernel(alpha=0.003), values)
    assert seasonal[trough] > 0.5
    assert seasonal[trough] == seasonal[3000:].max()
    assert flat[trough] < 0.3
