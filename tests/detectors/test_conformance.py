"""The contract checks every registered detector family must pass (see ``detectors.base``).

The suite is parametrised over ``registry.names()``, so a family added to the table is covered without editing
this file. Families whose defaults need long warm-ups get smaller hyper-parameters here so that short series
(under 500 points) still exercise their scoring; any other family runs with its defaults.
"""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import numpy as np
import pytest

from detectors import registry
from detectors.base import Detector, FloatArray, State

# Short warm-ups, so that a 300-point series reaches the scoring phase; seeds where the family is randomised.
_FAST_PARAMS: dict[str, dict[str, Any]] = {
    "hst": {"window_size": 40, "n_trees": 5, "height": 6, "seed": 7},
    "isolation_forest": {"history": 120, "refit_every": 80, "min_fit": 40, "n_estimators": 20, "seed": 7},
    "psi": {"reference": 60, "recent": 30, "warmup": 5},
    "ks": {"reference": 60, "recent": 30, "warmup": 5},
    "page_hinkley": {"min_instances": 20, "threshold": 20.0},
}

NAMES = registry.names()
STEP = 60.0
LENGTH = 480
SPLIT = 260


def params(name: str) -> dict[str, Any]:
    return dict(_FAST_PARAMS.get(name, {}))


def one(name: str) -> Detector:
    return registry.build_one(name, **params(name))


def series(seed: int, length: int = LENGTH) -> tuple[FloatArray, FloatArray]:
    """A metric with noise, a daily-like cycle, a spike, a lasting level shift and a few missing points."""
    rng = np.random.default_rng(seed)
    timestamps = 1_700_000_000.0 + STEP * np.arange(length, dtype=np.float64)
    values = 10.0 + 2.0 * np.sin(np.arange(length) / 15.0) + rng.normal(0.0, 0.5, length)
    values[length // 3] += 15.0
    values[2 * length // 3 :] += 6.0
    values[rng.choice(length, 5, replace=False)] = np.nan
    return timestamps, values


def run(detector: Detector, timestamps: FloatArray, values: FloatArray) -> list[float]:
    return [detector.update(float(t), float(v)) for t, v in zip(timestamps, values, strict=True)]


def roundtrip(state: State) -> State:
    return dict(json.loads(json.dumps(state)))


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_finite_in_unit_range_and_not_all_zero(name: str) -> None:
    scores = run(one(name), *series(1))
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    # Otherwise the equality checks below would compare nothing but zeros.
    assert max(scores) > 0.0


@pytest.mark.parametrize("name", NAMES)
def test_same_parameters_give_same_scores(name: str) -> None:
    timestamps, values = series(2)
    assert run(one(name), timestamps, values) == run(one(name), timestamps, values)


@pytest.mark.parametrize("name", NAMES)
def test_restored_snapshot_continues_identically(name: str) -> None:
    timestamps, values = series(3)
    original, uninterrupted = one(name), one(name)
    run(original, timestamps[:SPLIT], values[:SPLIT])
    run(uninterrupted, timestamps[:SPLIT], values[:SPLIT])
    state = original.snapshot()
    assert json.loads(json.dumps(state)) == state
    restored = one(name)
    restored.restore(roundtrip(state))
    tail = run(uninterrupted, timestamps[SPLIT:], values[SPLIT:])
    assert run(restored, timestamps[SPLIT:], values[SPLIT:]) == tail
    assert run(original, timestamps[SPLIT:], values[SPLIT:]) == tail


@pytest.mark.parametrize("name", NAMES)
def test_batch_path_equals_one_point_path(name: str) -> None:
    rng = np.random.default_rng(4)
    n_series = 4
    data = [series(10 + k) for k in range(n_series)]
    expected = [run(one(name), *data[k]) for k in range(n_series)]
    # Interleave the series point by point in a random order, then cut the stream into uneven batches, so that
    # batches hold several points of one slot and a slot's points straddle batch boundaries.
    owners = rng.permutation(np.repeat(np.arange(n_series), LENGTH))
    position = np.zeros(n_series, dtype=np.int64)
    slots = np.empty(len(owners), dtype=np.int64)
    timestamps = np.empty(len(owners))
    values = np.empty(len(owners))
    for i, slot in enumerate(owners):
        slots[i], timestamps[i], values[i] = slot, data[slot][0][position[slot]], data[slot][1][position[slot]]
        position[slot] += 1
    cuts = np.cumsum(rng.integers(1, 60, size=len(owners)))
    cuts = np.r_[0, cuts[cuts < len(owners)], len(owners)]
    batch = registry.build_batch(name, n_series, **params(name))
    got = np.concatenate(
        [batch.update_batch(slots[a:b], timestamps[a:b], values[a:b]) for a, b in itertools.pairwise(cuts)]
    )
    assert any(np.sum(slots[a:b] == slots[a]) > 2 for a, b in itertools.pairwise(cuts))
    for k in range(n_series):
        assert got[slots == k].tolist() == expected[k]


@pytest.mark.parametrize("name", NAMES)
def test_slot_snapshots_interoperate_with_detector_snapshots(name: str) -> None:
    timestamps, values = series(5)
    head, tail = slice(None, SPLIT), slice(SPLIT, None)
    batch = registry.build_batch(name, 3, **params(name))
    batch.update_batch(np.full(SPLIT, 1), timestamps[head], values[head])
    detector = one(name)
    detector.restore(roundtrip(batch.snapshot_slot(1)))
    single = one(name)
    run(single, timestamps[head], values[head])
    batch.restore_slot(2, roundtrip(single.snapshot()))
    expected = run(single, timestamps[tail], values[tail])
    assert run(detector, timestamps[tail], values[tail]) == expected
    n_tail = LENGTH - SPLIT
    assert batch.update_batch(np.full(n_tail, 2), timestamps[tail], values[tail]).tolist() == expected
    assert batch.update_batch(np.full(n_tail, 1), timestamps[tail], values[tail]).tolist() == expected


@pytest.mark.parametrize("name", NAMES)
def test_no_look_ahead(name: str) -> None:
    timestamps, values = series(6)
    other = values.copy()
    other[SPLIT:] = np.random.default_rng(99).normal(-50.0, 20.0, LENGTH - SPLIT)
    first, second = run(one(name), timestamps, values), run(one(name), timestamps, other)
    assert first[:SPLIT] == second[:SPLIT]
    assert first[SPLIT:] != second[SPLIT:]


@pytest.mark.parametrize("name", NAMES)
def test_nan_scores_zero_and_leaves_state_unchanged(name: str) -> None:
    timestamps, values = series(7)
    clean = values.copy()
    clean[np.isnan(clean)] = 0.0
    detector = one(name)
    run(detector, timestamps[:SPLIT], clean[:SPLIT])
    before = detector.snapshot()
    assert detector.update(float(timestamps[SPLIT]), math.nan) == 0.0
    assert detector.snapshot() == before
    # Points around a missing one score as if the missing point had never been sent.
    with_gaps = clean.copy()
    with_gaps[::7] = np.nan
    gapped = run(one(name), timestamps, with_gaps)
    present = ~np.isnan(with_gaps)
    without = run(one(name), timestamps[present], with_gaps[present])
    assert [s for s, keep in zip(gapped, present, strict=True) if not keep] == [0.0] * int(np.sum(~present))
    assert [s for s, keep in zip(gapped, present, strict=True) if keep] == without


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "values",
    [
        pytest.param(np.full(LENGTH, 3.0), id="constant"),
        pytest.param(np.zeros(LENGTH), id="zeros"),
        pytest.param(np.where(np.arange(LENGTH) % 3 == 0, np.nan, 1.0), id="constant-with-missing"),
        pytest.param(np.r_[np.full(LENGTH // 2, 1.0), np.full(LENGTH // 2, 1e9)], id="huge-step"),
        pytest.param(np.full(LENGTH, np.nan), id="all-missing"),
    ],
)
def test_degenerate_series_do_not_crash(name: str, values: FloatArray) -> None:
    # Irregular timestamps too: gaps of up to a day between points.
    timestamps = 1_700_000_000.0 + np.cumsum(np.random.default_rng(8).choice([1.0, 60.0, 86_400.0], LENGTH))
    scores = run(one(name), timestamps, values)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)


@pytest.mark.parametrize("name", NAMES)
def test_reset_slot_makes_a_slot_behave_like_new(name: str) -> None:
    (t_a, v_a), (t_b, v_b) = series(9), series(19)
    batch = registry.build_batch(name, 2, **params(name))
    batch.update_batch(np.zeros(LENGTH, dtype=np.int64), t_a, v_a)
    batch.update_batch(np.ones(SPLIT, dtype=np.int64), t_a[:SPLIT], v_a[:SPLIT])
    batch.reset_slot(0)
    assert batch.update_batch(np.zeros(LENGTH, dtype=np.int64), t_b, v_b).tolist() == run(one(name), t_b, v_b)
    # The other slot kept its state.
    continued = one(name)
    run(continued, t_a[:SPLIT], v_a[:SPLIT])
    n_tail = LENGTH - SPLIT
    got = batch.update_batch(np.ones(n_tail, dtype=np.int64), t_a[SPLIT:], v_a[SPLIT:])
    assert got.tolist() == run(continued, t_a[SPLIT:], v_a[SPLIT:])


@pytest.mark.parametrize("name", NAMES)
def test_ensure_capacity_keeps_existing_slots(name: str) -> None:
    timestamps, values = series(11)
    head, tail = slice(None, SPLIT), slice(SPLIT, None)
    batch = registry.build_batch(name, 1, **params(name))
    assert batch.capacity == 1
    batch.update_batch(np.zeros(SPLIT, dtype=np.int64), timestamps[head], values[head])
    batch.ensure_capacity(3)
    assert batch.capacity == 3
    batch.ensure_capacity(2)
    assert batch.capacity == 3
    reference = one(name)
    run(reference, timestamps[head], values[head])
    n_tail = LENGTH - SPLIT
    assert batch.update_batch(np.zeros(n_tail, dtype=np.int64), timestamps[tail], values[tail]).tolist() == run(
        reference, timestamps[tail], values[tail]
    )
    fresh = batch.update_batch(np.full(LENGTH, 2), timestamps, values)
    assert fresh.tolist() == run(one(name), timestamps, values)


def _noise(rng: np.random.Generator, length: int) -> FloatArray:
    return 10.0 + rng.normal(0.0, 0.5, length)


NON_FINITE = [
    pytest.param([math.nan], id="nan"),
    pytest.param([math.inf], id="plus-inf"),
    pytest.param([-math.inf], id="minus-inf"),
    pytest.param([math.inf, -math.inf, math.nan, math.inf], id="mixed"),
]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_non_finite_values_score_zero_and_leave_state_unchanged(name: str, bad: list[float]) -> None:
    """NaN (a missing point, as Prometheus' staleness marker), +Inf and -Inf are not scored and not learned."""
    timestamps, values = series(12)
    clean = np.nan_to_num(values, nan=10.0)
    detector = one(name)
    run(detector, timestamps[:SPLIT], clean[:SPLIT])
    before = detector.snapshot()
    at = float(timestamps[SPLIT])
    assert [detector.update(at, value) for value in bad] == [0.0] * len(bad)
    assert detector.snapshot() == before
    batch = registry.build_batch(name, 2, **params(name))
    batch.update_batch(np.ones(SPLIT, dtype=np.int64), timestamps[:SPLIT], clean[:SPLIT])
    got = batch.update_batch(np.ones(len(bad), dtype=np.int64), np.full(len(bad), at), np.array(bad))
    assert got.tolist() == [0.0] * len(bad)
    assert batch.snapshot_slot(1) == before


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bad", NON_FINITE)
def test_a_spike_after_non_finite_values_is_still_detected(name: str, bad: list[float]) -> None:
    rng = np.random.default_rng(13)
    head, tail = _noise(rng, SPLIT), _noise(rng, 60)
    # A family that needs a window of drifted points (psi, ks) or a lasting shift (adwin, page_hinkley) sees the
    # spike as a run of it: the last points are all spiked, 50 times the largest normal value.
    run_of = {"psi": 30, "ks": 30, "adwin": 60, "page_hinkley": 60}.get(name, 1)
    spiked = np.r_[head, bad, tail, np.full(run_of, 50.0 * np.abs(head).max())]
    threshold = registry.get(name).default_threshold
    timestamps = 1_700_000_000.0 + STEP * np.arange(len(spiked), dtype=np.float64)
    detector = one(name)
    scores = run(detector, timestamps, spiked)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    assert max(scores[-run_of:]) >= threshold
    batch = registry.build_batch(name, 1, **params(name))
    assert batch.update_batch(np.zeros(len(spiked), dtype=np.int64), timestamps, spiked).tolist() == scores


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("huge", [1e300, -1e300, 1.7e308, 1e39])
def test_huge_finite_values_do_not_crash_or_poison_scores(name: str, huge: float) -> None:
    rng = np.random.default_rng(14)
    values = np.r_[_noise(rng, SPLIT), huge, huge, _noise(rng, 100)]
    timestamps = 1_700_000_000.0 + STEP * np.arange(len(values), dtype=np.float64)
    scores = run(one(name), timestamps, values)
    assert all(math.isfinite(s) and 0.0 <= s <= 1.0 for s in scores)
    batch = registry.build_batch(name, 1, **params(name))
    assert batch.update_batch(np.zeros(len(values), dtype=np.int64), timestamps, values).tolist() == scores
