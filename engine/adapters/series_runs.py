"""Points gathered from a message of many series, grouped into runs: one series' points in time order each.

Decoders of multi-series formats (OTLP, Influx line protocol) gather a series index, a time and a value per point in
flat lists (or as numpy columns, when read so), which become arrays and runs once per message here: no object per
point, one sort per message.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine.domain.batches import FloatArray
from engine.domain.events import SeriesKey


class GatheredPoints:
    """Points of a message: ``ids[i]`` (an index into ``keys``), ``times[i]`` (in ``time_unit`` seconds) and
    ``values[i]``."""

    def __init__(
        self,
        time_unit: float = 1.0,
        *,
        keys: list[SeriesKey] | None = None,
        index: dict[SeriesKey, int] | None = None,
    ) -> None:
        # A decoder may lend its own table of series (``keys`` and their ``index``), kept across messages.
        self.keys: list[SeriesKey] = [] if keys is None else keys
        self.index: dict[SeriesKey, int] = {} if index is None else index
        self.ids: list[int] = []
        self.times: list[float] = []
        self.values: list[float] = []
        self._chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._unit = time_unit

    def id_of(self, series: SeriesKey) -> int:
        """The index of ``series``, added if new."""
        found = self.index.get(series)
        if found is None:
            found = self.index[series] = len(self.keys)
            self.keys.append(series)
        return found

    def add_columns(self, ids: np.ndarray, times: np.ndarray, values: np.ndarray) -> None:
        """Points given as columns (``ids`` indexes into ``keys``), kept with those in the lists."""
        if len(ids):
            self._chunks.append((ids, times, values))

    def __len__(self) -> int:
        return len(self.ids) + sum(len(ids) for ids, _, _ in self._chunks)

    def runs(self) -> tuple[list[tuple[SeriesKey, FloatArray]], int]:
        """The points as runs, each in time order, and how many were dropped: those without a time (zero or less)
        or whose value is not finite."""
        if not len(self):
            return [], 0
        ids = np.array(self.ids, dtype=np.int64)
        times = np.array(self.times, dtype=np.float64)
        values = np.array(self.values, dtype=np.float64)
        if self._chunks:
            ids = np.concatenate([ids, *(chunk_ids for chunk_ids, _, _ in self._chunks)])
            times = np.concatenate([times, *(chunk_times for _, chunk_times, _ in self._chunks)], dtype=np.float64)
            values = np.concatenate([values, *(chunk_values for _, _, chunk_values in self._chunks)])
        if self._unit != 1.0:
            times *= self._unit
        keep = np.isfinite(values) & np.isfinite(times) & (times > 0)
        dropped = len(ids) - int(np.count_nonzero(keep))
        if dropped:
            ids, times, values = ids[keep], times[keep], values[keep]
            if not len(ids):
                return [], dropped
        return _grouped(self.keys, ids, times, values), dropped


def _grouped(
    keys: Sequence[SeriesKey], ids: np.ndarray, times: FloatArray, values: FloatArray
) -> list[tuple[SeriesKey, FloatArray]]:
    order = np.lexsort((times, ids))
    ids = ids[order]
    points = np.empty((len(ids), 2), dtype=np.float64)
    points[:, 0] = times[order]
    points[:, 1] = values[order]
    bounds = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist(), len(ids)]
    series_ids = ids[bounds[:-1]].tolist()
    return [
        (keys[series_id], points[start:end])
        for series_id, start, end in zip(series_ids, bounds, bounds[1:], strict=False)
    ]
