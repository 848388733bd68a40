"""Per-second rates of cumulative values (OTLP's monotonic sums, and histograms' and summaries' counts and sums),
computed for all the points of a request at once, and the bounded map of each series' previous point they need.

A series' rate at a point is its increase since the series' previous point divided by the seconds between them;
a lower value or another start time is a reset (the increase is the value itself). The first point of a series
(or one forgotten, or whose partition moved to another replica) gives no rate and is kept as the base. A request's
points are taken in time order per series; a point no later than the series' base is older data and is left out
(the base stays). Points without a time or with a value that is not finite carry no measurement: they are dropped
and counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.adapters.series_runs import GatheredPoints

_NS = 1e-9


class Bounded:
    """A map of at most ``limit`` entries (after ``trim`` for those set through ``items``); the entry set or
    added longest ago goes first (entries updated in place keep their place)."""

    def __init__(self, limit: int) -> None:
        self._items: dict[Any, Any] = {}
        self._limit = limit

    @property
    def items(self) -> dict[Any, Any]:
        """The entries, for a loop that sets many and calls ``trim`` after."""
        return self._items

    def trim(self) -> None:
        items = self._items
        while len(items) > self._limit:
            del items[next(iter(items))]

    def swap(self, key: Any, value: Any) -> Any:
        """Set ``key`` to ``value``; its previous value (None if none)."""
        items = self._items
        previous = items.pop(key, None)
        items[key] = value
        if len(items) > self._limit:
            del items[next(iter(items))]
        return previous

    def __len__(self) -> int:
        return len(self._items)


# Positions given to points that are not numbered by the request's walk (histograms' and summaries' counts and
# sums): after every number point, in the order they are added.
_UNNUMBERED = 2**62


class CumulativePoints:
    """The cumulative points of one request, gathered as its metrics are read: a series index (into the request's
    ``GatheredPoints.keys``), start time and time (ns), value, and position in the request each; appended one at a
    time or as columns. Points of one series at one time are taken in the request's order, whichever way they
    were added (the position says it)."""

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.starts: list[int] = []
        self.times: list[int] = []
        self.values: list[float] = []
        self.positions: list[int] = []
        self._chunks: list[tuple[np.ndarray, ...]] = []

    def add(self, series_id: int, start: int, time: int, value: float, position: int | None = None) -> None:
        self.ids.append(series_id)
        self.starts.append(start)
        self.times.append(time)
        self.values.append(value)
        self.positions.append(_UNNUMBERED + len(self.positions) if position is None else position)

    def add_columns(
        self, ids: np.ndarray, starts: np.ndarray, times: np.ndarray, values: np.ndarray, positions: np.ndarray
    ) -> None:
        if len(ids):
            self._chunks.append((ids, starts, times, values, positions))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        parts = [
            (
                np.array(self.ids, dtype=np.int64),
                np.array(self.starts, dtype=np.int64),
                np.array(self.times, dtype=np.int64),
                np.array(self.values, dtype=np.float64),
                np.array(self.positions, dtype=np.int64),
            ),
            *self._chunks,
        ]
        ids, starts, times, values, positions = (np.concatenate(column) for column in zip(*parts, strict=True))
        return ids, starts, times, values, positions


def rate_points(points: CumulativePoints, out: GatheredPoints, state: Bounded) -> int:
    """Add the rates of ``points`` to ``out`` and move each series' base in ``state`` (keyed by series key) to its
    latest point; how many points were dropped for having no time or no finite value."""
    ids, starts, times, values, positions = points.columns()
    usable = (times > 0) & np.isfinite(values)
    dropped = len(ids) - int(np.count_nonzero(usable))
    if not usable.any():
        return dropped
    if dropped:
        ids, starts, times, values, positions = (
            ids[usable],
            starts[usable],
            times[usable],
            values[usable],
            positions[usable],
        )
    # Series by series, in time order, and points at one time in the request's order.
    order = np.lexsort((positions, times, ids))
    ids, starts, times, values = ids[order], starts[order], times[order], values[order]
    first = _firsts(ids)
    series = ids[first].tolist()
    keys, items = out.keys, state.items
    bases = [items.get(keys[series_id]) for series_id in series]
    has_base = np.array([base is not None for base in bases], dtype=bool)
    known = [base or (0, -1, 0.0) for base in bases]
    base_start = np.array([base[0] for base in known], dtype=np.int64)
    base_time = np.array([base[1] for base in known], dtype=np.int64)
    base_value = np.array([base[2] for base in known], dtype=np.float64)
    group = np.cumsum(first) - 1
    # Older than the base, or a second point at the same time: left out, the base stays.
    later = times > base_time[group]
    later[1:] &= first[1:] | (times[1:] != times[:-1])
    if not later.all():
        ids, starts, times, values, group = ids[later], starts[later], times[later], values[later], group[later]
        if not len(ids):
            return dropped
    first = _firsts(group)
    previous_start, previous_time, previous_value = np.empty_like(starts), np.empty_like(times), np.empty_like(values)
    previous_start[1:], previous_time[1:], previous_value[1:] = starts[:-1], times[:-1], values[:-1]
    leading = group[first]
    previous_start[first], previous_time[first], previous_value[first] = (
        base_start[leading],
        base_time[leading],
        base_value[leading],
    )
    rated = ~first
    rated[first] = has_base[leading]
    increase = np.where((starts != previous_start) | (values < previous_value), values, values - previous_value)
    with np.errstate(over="ignore", invalid="ignore"):
        rates = increase / ((times - previous_time) * _NS)
    out.add_columns(ids[rated], times[rated], rates[rated])
    last = np.append(np.flatnonzero(first)[1:] - 1, len(ids) - 1)
    for series_index, start, time, value in zip(
        group[last].tolist(), starts[last].tolist(), times[last].tolist(), values[last].tolist(), strict=True
    ):
        items[keys[series[series_index]]] = [start, time, value]
    state.trim()
    return dropped


def _firsts(ids: np.ndarray) -> np.ndarray:
    """Whether each element of a sorted column starts a run of equal elements."""
    first = np.empty(len(ids), dtype=bool)
    first[:1] = True
    first[1:] = ids[1:] != ids[:-1]
    return first
