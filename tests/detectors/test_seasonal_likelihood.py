"""The default detector (detectors/seasonal_likelihood.py): detects spikes and shifts once and stays quiet on noise;
that it is exact across shapes is tested beside the rarity family's (tests/detectors/test_ensemble.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors import registry
from detectors.base import FloatArray
from detectors.nab.corpus import load_corpus
from detectors.seasonal_likelihood import SeasonalLikelihoodKernel as DefaultKernel
from detectors.zscore import ParameterError
from tests.detectors import test_ensemble as rarity_tests
from tests.detectors.test_ensemble import seasonal

THRESHOLD = registry.get("default").default_threshold
NAB = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "nab"


def scores_of(values: FloatArray) -> FloatArray:
    return rarity_tests.scores_of(values, "default")


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
