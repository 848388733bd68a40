"""Growing a batch detector in two parts: fresh memory prepared beside the detector in use, then installed."""

from __future__ import annotations

import threading

import numpy as np

from detectors import registry


def _points(rng: np.random.Generator, slots: int, start: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.arange(slots, dtype=np.int64), np.full(slots, start), rng.normal(10.0, 1.0, slots)


def test_growth_prepared_while_the_detector_learns_keeps_everything_it_learned() -> None:
    kind = registry.get("default")
    prepared, direct = kind.make_batch(64), kind.make_batch(64)
    rng = np.random.default_rng(3)
    for step in range(20):
        batch = _points(rng, 64, 1_000.0 + 60.0 * step)
        prepared.update_batch(*batch)
        direct.update_batch(*batch)
    installs = []
    worker = threading.Thread(target=lambda: installs.append(prepared.prepare_capacity(1_000)))
    worker.start()
    # Learning goes on while the new memory is being prepared, and after it is, until it is installed.
    later = [_points(rng, 64, 3_000.0 + 60.0 * step) for step in range(5)]
    for batch in later:
        prepared.update_batch(*batch)
        direct.update_batch(*batch)
    worker.join()
    assert prepared.capacity == 64
    installs[0]()
    direct.ensure_capacity(1_000)
    assert prepared.capacity == direct.capacity >= 1_000
    for slot in (0, 63, 64, 999):
        assert prepared.snapshot_slot(slot) == direct.snapshot_slot(slot)


def test_a_prepared_growth_never_shrinks_a_detector_that_grew_further_meanwhile() -> None:
    batch = registry.get("default").make_batch(16)
    install = batch.prepare_capacity(32)
    batch.ensure_capacity(128)
    install()
    assert batch.capacity == 128
