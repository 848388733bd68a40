"""ThresholdFilter: score at or above the threshold fires, a cooldown silences the slot, batches equal sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest

from detectors.thresholds import ThresholdFilter


def sequential(filter_: ThresholdFilter, slots: list[int], stamps: list[float], scores: list[float]) -> list[bool]:
    return [
        bool(filter_.apply(np.array([s]), np.array([t]), np.array([v]))[0])
        for s, t, v in zip(slots, stamps, scores, strict=True)
    ]


def test_without_cooldown_every_point_at_or_above_the_threshold_fires() -> None:
    filter_ = ThresholdFilter(0.5)
    filter_.ensure_capacity(2)
    fired = filter_.apply(np.array([0, 1, 0, 1]), np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.5, 0.49, 0.9, 0.0]))
    assert fired.tolist() == [True, False, True, False]


def test_cooldown_silences_a_slot_but_not_the_others() -> None:
    filter_ = ThresholdFilter(0.5, cooldown_s=60.0)
    filter_.ensure_capacity(2)
    slots = np.array([0, 0, 1, 0, 0])
    stamps = np.array([0.0, 30.0, 30.0, 59.0, 60.0])
    fired = filter_.apply(slots, stamps, np.ones(5))
    assert fired.tolist() == [True, False, True, False, True]


def test_a_batch_gives_what_point_by_point_gives() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    slots = rng.integers(0, 5, n)
    stamps = np.sort(rng.uniform(0.0, 10_000.0, n))
    scores = rng.uniform(0.0, 1.0, n)
    batch = ThresholdFilter(0.8, cooldown_s=120.0)
    batch.ensure_capacity(5)
    one = ThresholdFilter(0.8, cooldown_s=120.0)
    one.ensure_capacity(5)
    fired = np.concatenate(
        [batch.apply(slots[i : i + 700], stamps[i : i + 700], scores[i : i + 700]) for i in range(0, n, 700)]
    )
    expected = sequential(one, slots.tolist(), stamps.tolist(), scores.tolist())
    assert fired.tolist() == expected
    assert 0 < fired.sum() < (scores >= 0.8).sum()


def test_snapshot_restore_and_reset() -> None:
    filter_ = ThresholdFilter(0.5, cooldown_s=100.0)
    filter_.ensure_capacity(1)
    filter_.apply(np.array([0]), np.array([1000.0]), np.array([0.9]))
    state = json.loads(json.dumps(filter_.snapshot_slot(0)))
    other = ThresholdFilter(0.5, cooldown_s=100.0)
    other.ensure_capacity(3)
    other.restore_slot(2, state)
    assert other.apply(np.array([2, 2]), np.array([1050.0, 1100.0]), np.array([0.9, 0.9])).tolist() == [False, True]
    filter_.reset_slot(0)
    assert filter_.snapshot_slot(0) == {"last_fired": None}
    assert filter_.apply(np.array([0]), np.array([1001.0]), np.array([0.9])).tolist() == [True]


def test_capacity_grows_and_keeps_state() -> None:
    filter_ = ThresholdFilter(0.5, cooldown_s=10.0)
    filter_.ensure_capacity(1)
    filter_.apply(np.array([0]), np.array([5.0]), np.array([1.0]))
    filter_.ensure_capacity(4)
    assert filter_.capacity == 4
    assert filter_.snapshot_slot(0) == {"last_fired": 5.0}
    assert filter_.snapshot_slot(3) == {"last_fired": None}


@pytest.mark.parametrize(("threshold", "cooldown"), [(1.5, 0.0), (-0.1, 0.0), (0.5, -1.0)])
def test_bad_settings_are_refused(threshold: float, cooldown: float) -> None:
    with pytest.raises(ValueError, match=r"threshold|cooldown"):
        ThresholdFilter(threshold, cooldown_s=cooldown)
