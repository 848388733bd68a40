"""Behaviour of the Isolation Forest family: its packed scorer, its fitting schedule and what it flags."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detectors import registry
from detectors.isolation_forest import IsolationForestDetector, IsolationForestStateError, PackedForest


@pytest.mark.parametrize("max_samples", [2, 17, 128])
def test_packed_forest_matches_scikit_learn(max_samples: int) -> None:
    rng = np.random.default_rng(0)
    train = rng.normal(size=(200, 2))
    train[:40, 1] = 0.0
    forest = IsolationForest(n_estimators=15, max_samples=max_samples, random_state=3).fit(train)
    probe = np.r_[train, rng.normal(0.0, 4.0, size=(60, 2))]
    np.testing.assert_allclose(PackedForest(forest).score(probe), -forest.score_samples(probe), rtol=0, atol=1e-12)


def test_nothing_is_scored_before_the_first_fit_and_refits_follow_the_schedule() -> None:
    values = np.random.default_rng(1).normal(0.0, 1.0, 300)
    detector = IsolationForestDetector(window=4, min_fit=50, refit_every=100, history=100, n_estimators=10)
    scores = detector.update_many(60.0 * np.arange(300, dtype=np.float64), values)
    # Rows start at the 4th point; the first forest is fitted on the 50th row.
    first_scored = 3 + 50
    assert np.all(scores[:first_scored] == 0.0)
    assert np.all(scores[first_scored:] > 0.0)
    assert detector.snapshot()["since_fit"] == (300 - first_scored) % 100


def test_isolation_forest_flags_a_spike() -> None:
    rng = np.random.default_rng(2)
    values = 10.0 + 2.0 * np.sin(np.arange(1200) / 50.0) + rng.normal(0.0, 0.5, 1200)
    values[1000] += 12.0
    scores = IsolationForestDetector().update_many(60.0 * np.arange(1200, dtype=np.float64), values)
    assert scores[1000] >= registry.get("isolation_forest").default_threshold
    assert scores[1000] >= np.quantile(scores[300:], 0.995)


def test_restore_refuses_a_snapshot_of_another_window() -> None:
    detector = IsolationForestDetector(window=3)
    detector.update_many(np.arange(10.0), np.arange(10.0))
    with pytest.raises(IsolationForestStateError):
        IsolationForestDetector(window=2).restore(detector.snapshot())
    with pytest.raises(IsolationForestStateError):
        IsolationForestDetector().restore({"values": []})
