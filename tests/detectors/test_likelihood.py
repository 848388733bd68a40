"""Anomaly likelihood: rises when raw scores climb above their usual level for this series, stays low otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from detectors.base import FloatArray
from detectors.likelihood import LikelihoodKernel, log_tail
from detectors.vectorised import KernelBatch, KernelDetector
from detectors.zscore import ParameterError


def run(kernel: LikelihoodKernel, raw: FloatArray) -> FloatArray:
    detector = KernelDetector(kernel)
    return np.array([detector.update(float(i), value) for i, value in enumerate(raw)])


def test_log_tail_is_monotone_and_bounded() -> None:
    z = np.linspace(-10.0, 40.0, 501)
    tail = log_tail(z, decades=10.0)
    assert np.all(np.diff(tail) > 0.0)
    assert tail[0] >= 0.0
    assert tail[-1] < 1.0
    # Phi(3) leaves a tail of 1.35e-3: about 2.87 decades.
    assert log_tail(np.array([3.0]), decades=1.0)[0] == pytest.approx(2.87 / 3.87, abs=0.01)


def test_a_burst_of_raw_scores_is_unlikely_and_the_usual_noise_is_not() -> None:
    rng = np.random.default_rng(0)
    raw = np.clip(rng.normal(0.2, 0.05, 3000), 0.0, 1.0)
    raw[2500:2510] = 0.9
    scores = run(LikelihoodKernel(), raw)
    assert np.all(scores[:300] == 0.0)
    assert scores[2500:2510].max() > 0.5
    assert scores[300:2500].max() < scores[2500:2510].max() - 0.2


def test_the_same_raw_score_means_more_on_a_quiet_series() -> None:
    rng = np.random.default_rng(1)
    quiet = np.abs(rng.normal(0.0, 0.01, 2000))
    noisy = np.clip(rng.uniform(0.0, 0.8, 2000), 0.0, 1.0)
    quiet[1500] = noisy[1500] = 0.8
    assert run(LikelihoodKernel(), quiet)[1500] > run(LikelihoodKernel(), noisy)[1500]


def test_batch_equals_one_point() -> None:
    rng = np.random.default_rng(2)
    raw = rng.uniform(0.0, 1.0, (3, 800)) ** 3
    expected = [run(LikelihoodKernel(warmup=50), row) for row in raw]
    batch = KernelBatch(LikelihoodKernel(warmup=50), 3)
    slots = np.tile(np.arange(3), 800)
    stamps = np.repeat(np.arange(800.0), 3)
    scores = batch.update_batch(slots, stamps, raw.T.ravel())
    for k in range(3):
        np.testing.assert_array_equal(scores[slots == k], expected[k])


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ParameterError):
        LikelihoodKernel(short_rate=0.0)
    with pytest.raises(ParameterError):
        LikelihoodKernel(decades=-1.0)
