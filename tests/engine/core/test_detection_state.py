"""Restoring detection state saved elsewhere: a state that fits continues the series, one that does not (saved by
an older version of the detector, or another family) is refused with a warning and the series starts afresh."""

import logging

import numpy as np
import pytest

from detectors import registry
from engine.core.detection import DetectionPolicy, DetectionService, DetectorSlotState
from engine.domain.events import MetricSample, SeriesKey

API = SeriesKey.of("latency", {"service": "api"})
WEB = SeriesKey.of("latency", {"service": "web"})


def feed(service: DetectionService, series: SeriesKey, values: np.ndarray, start: int = 0) -> list[float]:
    """Feed ``values`` one by one; the timestamps of the detections."""
    fired: list[float] = []
    for i, value in enumerate(values, start):
        fired += [anomaly.timestamp for anomaly in service.process([MetricSample(series, i * 60.0, float(value))])]
    return fired


def test_a_state_that_fits_continues_the_series() -> None:
    values = np.random.default_rng(1).normal(10.0, 1.0, 600)
    values[500] = 40.0
    whole = DetectionService.from_registry(DetectionPolicy())
    expected = feed(whole, API, values)
    first = DetectionService.from_registry(DetectionPolicy())
    feed(first, API, values[:300])
    second = DetectionService.from_registry(DetectionPolicy())
    second.restore(first.capture([API]))
    assert feed(second, API, values[300:], start=300) == expected == [500 * 60.0]


def test_a_state_of_another_layout_is_refused_and_the_series_starts_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    values = np.random.default_rng(2).normal(10.0, 1.0, 400)
    fresh = DetectionService.from_registry(DetectionPolicy())
    expected = feed(fresh, API, values)
    # A state saved by another detector family (its fields are not the default's).
    old = registry.build_batch("ewma", 1)
    old.update_batch(np.zeros(3, dtype=np.int64), np.arange(3.0), np.ones(3))
    misfit = DetectorSlotState(detector=old.snapshot_slot(0), threshold={"last_fired": None})
    service = DetectionService.from_registry(DetectionPolicy())
    with caplog.at_level(logging.WARNING, logger="engine.core.detection"):
        service.restore({API: misfit, WEB: misfit})
    assert "does not fit detector 'default'" in caplog.text
    assert "2 series" in caplog.text
    # The series restored from a misfit behaves exactly as a series never seen.
    assert feed(service, API, values) == expected
    assert service.series_count == 2
