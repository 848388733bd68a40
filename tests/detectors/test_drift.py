"""Behaviour of the PSI and KS drift families: quiet on a stable distribution, firing after it shifts."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from detectors import registry
from detectors.base import FloatArray
from detectors.drift import DriftStateError, KsDetector, PsiDetector, WindowDriftDetector


def scores_of(detector: WindowDriftDetector, values: FloatArray) -> FloatArray:
    return np.array([detector.update(60.0 * i, float(v)) for i, v in enumerate(values)])


@pytest.mark.parametrize("name", ["psi", "ks"])
def test_quiet_before_a_shift_and_firing_after(name: str) -> None:
    rng = np.random.default_rng(0)
    values = np.r_[rng.normal(0.0, 1.0, 900), rng.normal(1.0, 1.0, 400)]
    scores = scores_of(registry.build_one(name), values)  # type: ignore[arg-type]
    threshold = registry.get(name).default_threshold
    assert np.all(scores[: 300 + 150 - 1] == 0.0)
    assert np.max(scores[:900]) < threshold
    # Once the recent window is mostly shifted data the drift is reported on every point.
    assert np.all(scores[900 + 100 :] >= threshold)


def test_psi_matches_its_formula() -> None:
    detector = PsiDetector(reference=4, recent=4, bins=2, psi_half=0.25, epsilon=1e-4)
    scores = scores_of(detector, np.array([1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 4.0]))
    # The median (2.5) splits the reference 2/2 with none at 2.5 itself; the recent window has 3 below, 1 above.
    expected, actual = np.array([0.5, 0.0, 0.5]) + 1e-4, np.array([0.75, 0.0, 0.25]) + 1e-4
    expected, actual = expected / expected.sum(), actual / actual.sum()
    psi = float(np.sum((actual - expected) * np.log(actual / expected)))
    assert scores[:7].tolist() == [0.0] * 7
    assert scores[7] == pytest.approx(psi / (psi + 0.25), rel=1e-12)


def test_ks_score_is_one_minus_the_asymptotic_p_value() -> None:
    rng = np.random.default_rng(1)
    reference, recent = rng.normal(0.0, 1.0, 80), rng.normal(0.4, 1.0, 40)
    scores = scores_of(KsDetector(reference=80, recent=40), np.r_[reference, recent])
    statistic = stats.ks_2samp(reference, recent).statistic
    p_value = stats.kstwobign.sf(statistic * math.sqrt(80 * 40 / (80 + 40)))
    assert scores[-1] == pytest.approx(1.0 - p_value, abs=1e-12)


def test_warmup_points_are_not_part_of_the_reference() -> None:
    values = np.r_[np.full(50, 100.0), np.random.default_rng(2).normal(0.0, 1.0, 400)]
    with_warmup = scores_of(KsDetector(reference=150, recent=100, warmup=50), values)
    without = scores_of(KsDetector(reference=150, recent=100), values)
    assert np.max(with_warmup) < 0.99
    assert np.max(without) > 0.99


def test_constant_reference_and_constant_recent_window_score_zero() -> None:
    for detector in (PsiDetector(reference=20, recent=10), KsDetector(reference=20, recent=10)):
        scores = scores_of(detector, np.full(40, 3.0))
        assert scores.tolist() == [0.0] * 40
        assert detector.update(0.0, 7.0) > 0.0
        assert detector.update(0.0, -7.0) > 0.0
        assert not math.isnan(detector.update(0.0, math.nan))


def test_restore_refuses_a_snapshot_of_other_window_sizes() -> None:
    detector = PsiDetector(reference=10, recent=5)
    scores_of(detector, np.arange(20.0))
    with pytest.raises(DriftStateError):
        PsiDetector(reference=5, recent=5).restore(detector.snapshot())
    with pytest.raises(DriftStateError):
        KsDetector().restore({"reference": []})
