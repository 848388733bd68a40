"""Behaviour of the river-backed families: Half-Space Trees finds far-out values, ADWIN / Page-Hinkley find shifts."""

from __future__ import annotations

import numpy as np
import pytest

from detectors import registry
from detectors.base import FloatArray
from detectors.river_adapters import HalfSpaceTreesDetector, RiverSnapshotError, adwin, page_hinkley


def cyclic(seed: int, length: int) -> FloatArray:
    rng = np.random.default_rng(seed)
    return 10.0 + 2.0 * np.sin(np.arange(length) / 50.0) + rng.normal(0.0, 0.5, length)


def scores_of(detector: HalfSpaceTreesDetector, values: FloatArray) -> FloatArray:
    return np.array([detector.update(60.0 * i, float(v)) for i, v in enumerate(values)])


@pytest.mark.parametrize("value_range", [None, (0.0, 40.0)], ids=["running-range", "fixed-range"])
@pytest.mark.parametrize("seed", [0, 1])
def test_half_space_trees_flags_a_far_spike(seed: int, value_range: tuple[float, float] | None) -> None:
    values = cyclic(seed, 1200)
    values[1000] += 20.0
    scores = scores_of(HalfSpaceTreesDetector(value_range=value_range), values)
    threshold = registry.get("hst").default_threshold
    assert scores[1000] >= threshold
    assert np.max(np.delete(scores, 1000)) < threshold


def test_half_space_trees_is_quiet_during_its_first_window() -> None:
    values = cyclic(2, 300)
    values[100] += 50.0
    scores = scores_of(HalfSpaceTreesDetector(window_size=150), values)
    assert np.all(scores[:150] == 0.0)
    assert np.any(scores[150:] > 0.0)


def test_half_space_trees_seed_changes_the_trees() -> None:
    values = cyclic(3, 400)
    assert (
        scores_of(HalfSpaceTreesDetector(seed=1), values).tolist()
        != scores_of(HalfSpaceTreesDetector(seed=2), values).tolist()
    )


@pytest.mark.parametrize(("make", "delay"), [(adwin, 100), (page_hinkley, 60)], ids=["adwin", "page_hinkley"])
def test_drift_detectors_fire_after_a_level_shift_only(make: object, delay: int) -> None:
    rng = np.random.default_rng(4)
    values = np.r_[rng.normal(5.0, 1.0, 600), rng.normal(9.0, 1.0, 300)]
    detector = make()  # type: ignore[operator]
    scores = np.array([detector.update(60.0 * i, float(v)) for i, v in enumerate(values)])
    assert set(np.unique(scores)) <= {0.0, 1.0}
    assert np.all(scores[:600] == 0.0)
    assert np.any(scores[600 : 600 + delay] == 1.0)


def test_snapshot_from_another_family_or_version_is_refused() -> None:
    source = adwin()
    source.update(0.0, 1.0)
    state = source.snapshot()
    with pytest.raises(RiverSnapshotError):
        page_hinkley().restore(state)
    with pytest.raises(RiverSnapshotError):
        adwin().restore({**state, "river": "0.0.1"})
    with pytest.raises(RiverSnapshotError):
        adwin().restore({"something": "else"})
