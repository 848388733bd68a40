"""The series bound of detection: new series past it are refused and counted, the series kept go on."""

from collections.abc import Callable

import numpy as np
import pytest

from detectors.base import BatchDetector, FloatArray, IntArray, State
from engine.core.detection import SERIES_LIMIT, DetectionPolicy, DetectionService
from engine.domain.batches import SampleBatch
from engine.domain.events import MetricSample, SeriesKey


class AboveTen(BatchDetector):
    """Scores 1 for values above 10, whatever the slot: which samples reach the detector is what is tested."""

    def __init__(self) -> None:
        self._capacity = 1

    @property
    def capacity(self) -> int:
        return self._capacity

    def ensure_capacity(self, capacity: int) -> None:
        self._capacity = max(self._capacity, capacity)

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        assert (slots >= 0).all()
        assert (slots < self.capacity).all()
        return np.where(values > 10, 1.0, 0.0)

    def reset_slot(self, slot: int) -> None:
        return

    def snapshot_slot(self, slot: int) -> State:
        return {}

    def restore_slot(self, slot: int, state: State) -> None:
        return


def _series(count: int, start: int = 0) -> list[SeriesKey]:
    return [SeriesKey.of("requests_total", {"pod": f"pod-{n}"}) for n in range(start, start + count)]


def _columns(series: list[SeriesKey], value: float, at: float = 0.0) -> SampleBatch:
    return SampleBatch(
        series,
        np.arange(len(series) + 1, dtype=np.int64),
        np.full(len(series), at),
        np.full(len(series), value),
    )


def _bounded(limit: int) -> tuple[DetectionService, list[tuple[str, int]]]:
    service = DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(), 0.5, max_series=limit)
    refusals: list[tuple[str, int]] = []
    service.add_refusal_listener(lambda reason, count: refusals.append((reason, count)))
    return service, refusals


def test_a_flood_of_new_series_keeps_only_as_many_as_the_bound() -> None:
    service = DetectionService.from_registry(DetectionPolicy(), max_series=1_000)
    refusals: list[tuple[str, int]] = []
    service.add_refusal_listener(lambda reason, count: refusals.append((reason, count)))
    for first in range(0, 200_000, 50_000):
        service.process(_columns(_series(50_000, first), 1.0))
    assert service.series_count == 1_000
    assert refusals == [(SERIES_LIMIT, 49_000), (SERIES_LIMIT, 50_000), (SERIES_LIMIT, 50_000), (SERIES_LIMIT, 50_000)]


@pytest.mark.parametrize("columnar", [True, False])
def test_series_kept_go_on_and_refused_ones_find_nothing(columnar: bool) -> None:
    service, refusals = _bounded(2)
    kept = _series(2)
    service.process(_columns(kept, 1.0))
    late = _series(2, start=2)
    # A spike on every series, kept and late, interleaved in one batch.
    samples = [MetricSample(key, 60.0, 50.0) for key in (late[0], kept[0], late[1], kept[1])]
    anomalies = service.process(SampleBatch.of_samples(samples) if columnar else samples)
    assert [anomaly.series for anomaly in anomalies] == [kept[0], kept[1]]
    assert [anomaly.value for anomaly in anomalies] == [50.0, 50.0]
    assert service.series_count == 2
    assert refusals == [(SERIES_LIMIT, 2)]


def test_a_batch_of_refused_series_only_finds_nothing() -> None:
    service, refusals = _bounded(1)
    service.process(_columns(_series(1), 1.0))
    assert service.process(_columns(_series(3, start=1), 50.0)) == []
    assert refusals == [(SERIES_LIMIT, 3)]


def test_admit_keeps_room_for_what_fits_and_refuses_the_rest() -> None:
    service, refusals = _bounded(3)
    series = _series(5)
    assert service.admit(series[:1]) == set()
    assert service.admit(series) == set(series[3:])
    # Series already kept are admitted again whatever the bound.
    assert service.admit(series[:3]) == set()
    assert service.series_count == 3
    assert refusals == [(SERIES_LIMIT, 2)]


def test_forgotten_series_make_room_for_new_ones() -> None:
    service, _ = _bounded(2)
    series = _series(3)
    assert service.admit(series) == {series[2]}
    service.forget(series[:1])
    assert service.admit(series[2:]) == set()
    assert service.series_count == 2


def test_restoring_state_stays_within_the_bound() -> None:
    source = DetectionService.from_registry(DetectionPolicy())
    series = _series(4)
    source.process(_columns(series, 1.0))
    target = DetectionService.from_registry(DetectionPolicy(), max_series=3)
    refusals: list[tuple[str, int]] = []
    target.add_refusal_listener(lambda reason, count: refusals.append((reason, count)))
    target.restore(source.capture(series))
    assert target.series_count == 3
    assert refusals == [(SERIES_LIMIT, 1)]


def test_without_a_bound_every_series_is_kept() -> None:
    service = DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(), 0.5)
    assert service.admit(_series(5_000)) == set()
    assert service.series_count == 5_000


def test_the_detector_never_grows_past_the_bound() -> None:
    detector = AboveTen()
    service = DetectionService(DetectionPolicy(detector="above-ten"), detector, 0.5, max_series=100)
    service.admit(_series(1_000))
    assert service.series_count == 100
    assert detector.capacity == 100


class _CountingGrowth(AboveTen):
    """Counts the growths done where the detector is used (``ensure_capacity``) and those prepared ahead."""

    def __init__(self) -> None:
        super().__init__()
        self.grown_in_place = 0
        self.prepared: list[int] = []

    def ensure_capacity(self, capacity: int) -> None:
        if capacity > self.capacity:
            self.grown_in_place += 1
        super().ensure_capacity(capacity)

    def prepare_capacity(self, capacity: int) -> Callable[[], None]:
        self.prepared.append(capacity)

        def install() -> None:
            self._capacity = max(self._capacity, capacity)

        return install


async def test_room_made_ahead_for_the_new_series_only_leaves_admission_nothing_to_grow() -> None:
    detector = _CountingGrowth()
    service = DetectionService(DetectionPolicy(detector="above-ten"), detector, 0.5, max_series=1000)
    known = _series(3)
    assert service.admit(known) == set()
    grown_before = detector.grown_in_place
    series = [*known, *_series(400, start=3)]
    await service.make_room(series)
    # Room for the 403 series (the 3 known ones are not counted twice), the bound permitting.
    assert detector.prepared == [403]
    assert service.admit(series) == set()
    assert detector.grown_in_place == grown_before
    await service.make_room(series)
    assert detector.prepared == [403]


async def test_room_made_ahead_never_passes_the_series_bound() -> None:
    detector = _CountingGrowth()
    service = DetectionService(DetectionPolicy(detector="above-ten"), detector, 0.5, max_series=50)
    await service.make_room(_series(400))
    assert detector.prepared == [50]
    assert service.admit(_series(400)) == set(_series(400)[50:])
