"""How a batch is split into rounds: round r holds every slot's r-th point of the batch, in ascending slot order."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from detectors.vectorised import rounds


@given(st.lists(st.integers(min_value=0, max_value=40), max_size=300))
def test_round_r_holds_each_slots_r_th_point_in_ascending_slot_order(slots: list[int]) -> None:
    array = np.array(slots, dtype=np.int64)
    split = rounds(array)
    seen: dict[int, list[int]] = {}
    for round_, points in enumerate(split):
        owners = array[points]
        # Distinct slots, visited in ascending order, each at its r-th point.
        assert (np.diff(owners) > 0).all()
        for point, slot in zip(points.tolist(), owners.tolist(), strict=True):
            earlier = seen.setdefault(slot, [])
            assert len(earlier) == round_
            earlier.append(point)
    # Every point exactly once, and each slot's points in batch order.
    assert sorted(point for points in split for point in points.tolist()) == list(range(len(slots)))
    assert seen == {slot: [i for i, s in enumerate(slots) if s == slot] for slot in set(slots)}


def test_a_batch_of_many_points_per_slot_keeps_every_round() -> None:
    slots = np.tile(np.arange(1_000), 150)
    split = rounds(slots)
    assert len(split) == 150
    assert all(np.array_equal(points, np.arange(1_000) + 1_000 * r) for r, points in enumerate(split))
