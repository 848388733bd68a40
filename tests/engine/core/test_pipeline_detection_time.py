"""The pipeline times detection per batch and tells its observers (``aiops_detection_seconds`` and
``aiops_detection_batch_samples`` in the engine's metrics)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from detectors.base import FloatArray, IntArray
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.app.summary import RunSummary
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.ports import FanOutObserver
from engine.domain.clock import FakeClock
from engine.domain.events import MetricSample
from tests.engine.core.remediating import remediator
from tests.engine.core.test_pipeline import CALM, HOT, AboveTen, ListSource

DETECTOR_S = 0.02


class SlowAboveTen(AboveTen):
    """Takes ``DETECTOR_S`` per batch, so the measured time is known to be at least that."""

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        time.sleep(DETECTOR_S)
        return super().update_batch(slots, timestamps, values)


class Timings(RunSummary):
    def __init__(self) -> None:
        super().__init__()
        self.timed: list[tuple[int, float]] = []

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        self.timed.append((len(samples), seconds))


async def test_every_batch_s_detection_is_timed_and_counted() -> None:
    batches: list[list[MetricSample]] = [
        [MetricSample(HOT, 60.0 * minute, 1.0) for minute in range(size)] + [MetricSample(CALM, 0.0, 1.0)]
        for size in (1, 4, 200)
    ]
    batches.insert(1, [])  # an empty batch is not detected, so not timed
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    timings, metrics = Timings(), EngineMetrics(CollectorRegistry())
    pipeline = Pipeline(
        source=ListSource(batches),
        detection=DetectionService(DetectionPolicy(detector="slow"), SlowAboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=1, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [], clock=FakeClock()),
        store=store,
        observer=FanOutObserver(timings, metrics),
    )
    await pipeline.run()
    await store.close()

    assert [size for size, _ in timings.timed] == [2, 5, 201]
    assert all(DETECTOR_S <= seconds < 1.0 for _, seconds in timings.timed), timings.timed
    registry = metrics.registry
    assert registry.get_sample_value("aiops_detection_seconds_count") == 3
    assert registry.get_sample_value("aiops_detection_seconds_sum") == pytest.approx(sum(s for _, s in timings.timed))
    assert registry.get_sample_value("aiops_detection_seconds_bucket", {"le": "0.01"}) == 0
    assert registry.get_sample_value("aiops_detection_batch_samples_sum") == 208
    assert registry.get_sample_value("aiops_detection_batch_samples_bucket", {"le": "10.0"}) == 2
