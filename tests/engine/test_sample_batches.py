"""Columnar sample batches behave as the sequence of samples they hold, and the hot paths that read their columns
give what the sample-by-sample paths give."""

import numpy as np
import pytest

from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.playbooks.verification import Verifier
from engine.domain.batches import SampleBatch, latest_timestamp, parts
from engine.domain.events import MetricSample, SeriesKey

API = SeriesKey.of("latency_seconds", {"service": "api"})
WEB = SeriesKey.of("latency_seconds", {"service": "web"})


def _samples() -> list[MetricSample]:
    return [
        MetricSample(API, 10.0, 0.5),
        MetricSample(API, 20.0, 0.6),
        MetricSample(WEB, 15.0, 1.5),
        MetricSample(API, 30.0, 0.7),
    ]


def test_a_batch_is_the_sequence_of_its_samples() -> None:
    samples = _samples()
    batch = SampleBatch.of_samples(samples)
    assert len(batch) == 4
    assert list(batch) == samples
    assert [batch[i] for i in range(4)] == samples
    assert batch[-1] == samples[-1]
    assert list(batch[1:3]) == samples[1:3]
    assert batch.series == (API, WEB, API)
    assert list(batch.runs()) == [(API, 0, 2), (WEB, 2, 3), (API, 3, 4)]
    assert batch.run_lengths.tolist() == [2, 1, 1]
    with pytest.raises(IndexError):
        batch[4]


def test_the_latest_timestamp_is_read_from_the_column_or_the_samples() -> None:
    samples = _samples()
    assert latest_timestamp(SampleBatch.of_samples(samples)) == 30.0
    assert latest_timestamp(samples) == 30.0


def test_runs_must_cover_the_rows_in_order() -> None:
    rows = np.array([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="one start per run"):
        SampleBatch([API], np.array([0, 1, 3]), rows, rows)
    with pytest.raises(ValueError, match="cover the rows"):
        SampleBatch([API, WEB], np.array([0, 2, 2]), rows, rows)
    with pytest.raises(ValueError, match="cover the rows"):
        SampleBatch([API], np.array([0, 2]), rows, rows)
    assert len(SampleBatch([], np.array([0]), np.empty(0), np.empty(0))) == 0


def test_detection_finds_the_same_anomalies_in_columns_as_in_samples() -> None:
    rng = np.random.default_rng(1)
    series = [SeriesKey.of("queue_depth", {"shard": str(s)}) for s in range(5)]
    samples = []
    for lo in range(0, 400, 50):
        for number, key in enumerate(series):
            values = 50.0 + rng.normal(0.0, 1.0, 50)
            if lo == 300 and number % 2 == 0:
                values[10] = 90.0  # a spike in some series
            samples.extend(MetricSample(key, float(lo + i), float(values[i])) for i in range(50))
    by_sample = DetectionService.from_registry(DetectionPolicy())
    by_column = DetectionService.from_registry(DetectionPolicy())
    expected, found = [], []
    for lo in range(0, len(samples), 500):
        chunk = samples[lo : lo + 500]
        expected.extend(by_sample.process(chunk))
        found.extend(by_column.process(SampleBatch.of_samples(chunk)))
    assert expected, "the spikes must be detected for the comparison to mean anything"
    assert found == expected


def test_verification_keeps_the_same_history_from_columns() -> None:
    samples = _samples()
    from_samples, from_columns = Verifier(), Verifier()
    for verifier in (from_samples, from_columns):
        verifier.watch({"latency_seconds"})
    from_samples.observe(samples)
    from_columns.observe(SampleBatch.of_samples(samples))
    assert from_columns.history(API) == from_samples.history(API) == [(10.0, 0.5), (20.0, 0.6), (30.0, 0.7)]
    assert from_columns.history(WEB) == [(15.0, 1.5)]


def test_parts_cut_a_sequence_in_order_with_a_shorter_last_part() -> None:
    assert list(parts([1, 2, 3, 4, 5], 2)) == [[1, 2], [3, 4], [5]]
    assert list(parts([], 3)) == []
    with pytest.raises(ValueError, match="size"):
        list(parts([1], 0))
