"""Columnar batches of metric samples: what a high-volume source hands the pipeline.

A batch from Kafka holds hundreds of thousands of samples, most of them in runs of one series (a message carries
points of one series). Making one ``MetricSample`` object per point cost more than detecting on it, so a
``SampleBatch`` keeps the points in arrays and the series once per run. It is still a ``Sequence[MetricSample]``
(items are made on access) for code that wants single samples; the hot paths (detection, the event-time
watermark, verification look-back) read its columns.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar, overload

import numpy as np
import numpy.typing as npt

from engine.domain.events import MetricSample, SeriesKey

FloatArray = npt.NDArray[np.float64]
T = TypeVar("T")
IntArray = npt.NDArray[np.int64]


class SampleBatch(Sequence[MetricSample]):
    """Samples in time order within each series: run ``r`` is ``series[r]`` at rows ``starts[r]:starts[r + 1]``."""

    __slots__ = ("_series", "_starts", "_timestamps", "_values")

    def __init__(
        self, series: Sequence[SeriesKey], starts: IntArray, timestamps: FloatArray, values: FloatArray
    ) -> None:
        if len(starts) != len(series) + 1 or len(timestamps) != len(values):
            raise ValueError("a batch needs one start per run plus the end, and as many values as timestamps")
        if len(series) and (starts[0] != 0 or starts[-1] != len(timestamps) or np.any(np.diff(starts) <= 0)):
            raise ValueError("runs must cover the rows in order, each at least one row long")
        self._series = tuple(series)
        self._starts = starts
        self._timestamps = timestamps
        self._values = values

    @classmethod
    def of_samples(cls, samples: Sequence[MetricSample]) -> SampleBatch:
        """The same samples, columnar (consecutive samples of one series become one run)."""
        series: list[SeriesKey] = []
        starts: list[int] = []
        for row, sample in enumerate(samples):
            if not series or sample.series != series[-1]:
                series.append(sample.series)
                starts.append(row)
        starts.append(len(samples))
        return cls(
            series,
            np.array(starts, dtype=np.int64),
            np.fromiter((s.timestamp for s in samples), dtype=np.float64, count=len(samples)),
            np.fromiter((s.value for s in samples), dtype=np.float64, count=len(samples)),
        )

    @property
    def series(self) -> tuple[SeriesKey, ...]:
        """The series of each run."""
        return self._series

    @property
    def run_lengths(self) -> IntArray:
        return np.diff(self._starts)

    @property
    def timestamps(self) -> FloatArray:
        return self._timestamps

    @property
    def values(self) -> FloatArray:
        return self._values

    def runs(self) -> Iterator[tuple[SeriesKey, int, int]]:
        """Each run's series and its rows ``[start, end)``."""
        bounds = self._starts.tolist()
        for index, series in enumerate(self._series):
            yield series, bounds[index], bounds[index + 1]

    def series_at(self, row: int) -> SeriesKey:
        return self._series[int(np.searchsorted(self._starts, row, side="right")) - 1]

    def __len__(self) -> int:
        return len(self._timestamps)

    @overload
    def __getitem__(self, index: int) -> MetricSample: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[MetricSample]: ...

    def __getitem__(self, index: int | slice) -> MetricSample | Sequence[MetricSample]:
        if isinstance(index, slice):
            return [self[row] for row in range(*index.indices(len(self)))]
        row = index + len(self) if index < 0 else index
        if not 0 <= row < len(self):
            raise IndexError("sample index out of range")
        return MetricSample(self.series_at(row), float(self._timestamps[row]), float(self._values[row]))

    def __iter__(self) -> Iterator[MetricSample]:
        timestamps, values = self._timestamps.tolist(), self._values.tolist()
        for series, start, end in self.runs():
            for row in range(start, end):
                yield MetricSample(series, timestamps[row], values[row])


def latest_timestamp(samples: Sequence[MetricSample]) -> float:
    """The newest event time in ``samples`` (not empty), read from the column when the batch is columnar."""
    if isinstance(samples, SampleBatch):
        return float(samples.timestamps.max())
    return max(sample.timestamp for sample in samples)


def parts(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in order, ``size`` at a time (the last part may be shorter)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start : start + size]
