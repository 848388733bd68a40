"""OTLP metrics flattened into the engine's series: one module for the Kafka formats and the OTLP/HTTP receiver.

An ``ExportMetricsServiceRequest`` (protobuf, or its proto3 JSON form) becomes runs of ``(SeriesKey, points)``, each
run one series' points in time order. What an OTLP point becomes (the README's table says the same):

- labels: the resource's attributes and the point's, names sanitised (``metric_names``), the point's winning over
  the resource's; scope attributes are left out. Values that are not strings are written as OTLP's attribute
  rules say (booleans ``true``/``false``, arrays and maps as JSON, bytes as base64).
- gauge, and a non-monotonic cumulative sum (an up-down counter): the value, under the metric's name.
- monotonic cumulative sum (a counter): its per-second rate between consecutive points of the series, under the
  metric's name. The first point of a series gives no rate; a lower value or a new start time is a reset (the
  increase is the new value).
- delta sum: the point's value divided by its interval (per second); a point without a start time gives nothing.
- histogram and exponential histogram: ``<name>_count`` and ``<name>_sum`` as per-second rates (as counters
  are), and ``<name>{quantile="0.5"}`` and ``<name>{quantile="0.99"}`` estimated from the buckets of the interval
  (the difference to the previous point when cumulative), interpolating linearly within a bucket as Prometheus'
  ``histogram_quantile`` does.
- summary: ``<name>_count`` and ``<name>_sum`` as per-second rates, and each quantile as ``<name>{quantile="q"}``.

Points flagged "no recorded value" (a series that ended), points without a time, and NaN or infinite values carry
no measurement and are dropped (the last two counted in ``Flattened.dropped``). The previous point of each rated
series is kept in a bounded map (``max_state`` series, the one first seen longest ago forgotten first): a series
forgotten, or one whose partition moved to another replica, starts again with no rate for its first point.

Flattening is on the path of every point. upb parses a request (and refuses what is malformed) at about 3 million
points/s; reading its points back as Python objects, one wrapper per point and per attribute, gave 55,000 points/s
on collector-shaped requests (``python -m benchmarks.formats``, 2-core machine). So gauges and sums, most points, are
read from upb's own serialization of the metric (well-formed: written from the message it parsed), a point's
attribute set is known by its bytes, which map to its series in caches, and large metrics are read as numpy
columns: 150,000-390,000 points/s on the same machine. Histograms and summaries, fewer and costlier anyway, are
read as objects. Points are gathered in flat lists that become arrays once per request.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import Any

import numpy as np
import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import NumberDataPoint

from engine.adapters.metric_names import metric_name, sanitized_labels
from engine.adapters.series_runs import GatheredPoints
from engine.domain.batches import FloatArray
from engine.domain.events import SeriesKey
from engine.domain.limits import LabelLimits, LabelProblem, label_problem, metric_name_problem

Run = tuple[SeriesKey, FloatArray]
# One variant of a metric's series: a name suffix and extra labels (``_count``; ``quantile="0.99"``).
Variant = tuple[str, tuple[tuple[str, str], ...]]

_CUMULATIVE = 2
_DELTA = 1
_NO_RECORDED_VALUE = 1

_NS = 1e-9
# The quantiles estimated from histogram buckets.
HISTOGRAM_QUANTILES = (0.5, 0.99)
_PLAIN: tuple[Variant, ...] = (("", ()),)
_HISTOGRAM: tuple[Variant, ...] = (
    ("_count", ()),
    ("_sum", ()),
    *(("", (("quantile", repr(q)),)) for q in HISTOGRAM_QUANTILES),
)
# Exponential histograms' scales outside this range are not defined by OTLP.
_MIN_SCALE, _MAX_SCALE = -10, 20
# Arrays and maps in attribute values nest at most this deep (deeper: the request is refused).
_MAX_NESTING = 8
_DEFAULT_MAX_STATE = 100_000
_DEFAULT_MAX_CACHED = 100_000


class OtlpDecodeError(ValueError):
    """A body that is not an ``ExportMetricsServiceRequest`` (or breaks its rules); the message says why."""


@dataclass
class Flattened:
    """What one request became: runs of series in time order, the series refused for their labels (with how many
    of their points), how many points it carried and how many of them had no usable value."""

    runs: list[Run]
    refused: list[tuple[LabelProblem, int]] = field(default_factory=list)
    points: int = 0
    dropped: int = 0

    @property
    def samples(self) -> int:
        return sum(len(points) for _, points in self.runs)


def parse_proto(body: bytes) -> ExportMetricsServiceRequest:
    """The request a protobuf body holds; OtlpDecodeError if it holds none."""
    request = ExportMetricsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"not an OTLP ExportMetricsServiceRequest: {exc}") from exc
    return request


def parse_json(body: bytes) -> ExportMetricsServiceRequest:
    """The request a proto3 JSON body holds (camelCase or original field names, 64-bit integers as strings or
    numbers, enums by name or number; unknown fields ignored, as OTLP asks of receivers); OtlpDecodeError if none.
    orjson reads the text (faster than the json module ``Parse`` uses, and it bounds nesting)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpDecodeError("an OTLP JSON request must be an object")
    request = ExportMetricsServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpDecodeError(f"not an OTLP ExportMetricsServiceRequest: {exc}") from exc
    return request


def count_points(request: ExportMetricsServiceRequest) -> int:
    """How many data points ``request`` carries (to bound the work before flattening it)."""
    total = 0
    for resource_metrics in request.resource_metrics:
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is not None:
                    total += len(getattr(metric, kind).data_points)
    return total


class _Bounded:
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


class OtlpFlattener:
    """Flattens requests into runs; keeps the previous point of rated series (counters, histograms, summaries) and
    a cache of series keys, both bounded. One flattener per stream whose series it rates (a Kafka source's topic,
    the HTTP receiver)."""

    def __init__(
        self, labels: LabelLimits, *, max_state: int = _DEFAULT_MAX_STATE, max_cached: int = _DEFAULT_MAX_CACHED
    ) -> None:
        self._limits = labels
        self._state = _Bounded(max_state)
        self._cache: dict[tuple[Any, ...], tuple[SeriesKey, ...] | LabelProblem] = {}
        self._max_cached = max_cached
        self._known: dict[tuple[str, bytes], dict[bytes, SeriesKey | tuple[tuple[str, str], ...]]] = {}
        self._known_entries = 0

    @property
    def state_size(self) -> int:
        """How many series' previous points are kept."""
        return len(self._state)

    def flatten(self, request: ExportMetricsServiceRequest) -> Flattened:
        out = GatheredPoints(_NS)
        result = Flattened([])
        refused: dict[tuple[Any, ...], list[Any]] = {}
        for resource_metrics in request.resource_metrics:
            resource = _attributes(resource_metrics.resource.attributes)
            # Per resource: each attribute set of a metric is resolved to its series once.
            local: dict[tuple[Any, ...], tuple[int, ...] | None] = {}

            def family(
                name: str,
                variants: tuple[Variant, ...],
                attributes: tuple[tuple[str, str], ...],
                resource: tuple[tuple[str, str], ...] = resource,
                local: dict[tuple[Any, ...], tuple[int, ...] | None] = local,
            ) -> tuple[int, ...] | None:
                found = self.family_of(name, variants, resource, attributes)
                if isinstance(found, LabelProblem):
                    entry = refused.setdefault((name, resource, attributes), [found, 0])
                    entry[1] += 1
                    return None
                ids = tuple(out.id_of(series) for series in found)
                local[(name, variants, attributes)] = ids
                return ids

            numbers = _NumberSeries(self, resource, resource_metrics.resource.SerializeToString(), out, family)
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    result.points += self._metric(metric, out, local, family, numbers)
        result.runs, dropped = out.runs()
        result.dropped += dropped
        result.refused = [(problem, count) for problem, count in refused.values()]
        return result

    def known(self, name: str, resource: bytes) -> dict[bytes, SeriesKey | tuple[tuple[str, str], ...]]:
        """Series keys of a metric's number points in a resource by their serialized attributes (the attributes
        themselves for a refused series); bounded with the other cached keys."""
        found = self._known.get((name, resource))
        if found is None:
            found = self._known[(name, resource)] = {}
        return found

    def remember(
        self,
        known: dict[bytes, SeriesKey | tuple[tuple[str, str], ...]],
        raw: bytes,
        found: SeriesKey | tuple[Any, ...],
    ) -> None:
        """Keep what a ``known`` map learnt, all such maps together bounded by the cache's size."""
        self._known_entries += 1
        if self._known_entries > self._max_cached:
            # Dropped whole, not one by one: the maps only save work, and refilling them is cheap.
            self._known.clear()
            self._known_entries = 1
        known[raw] = found

    def family_of(
        self,
        name: str,
        variants: tuple[Variant, ...],
        resource: tuple[tuple[str, str], ...],
        attributes: tuple[tuple[str, str], ...],
    ) -> tuple[SeriesKey, ...] | LabelProblem:
        """The series of a metric's point (one per variant), or why they are refused; cached."""
        cache_key = (name, variants, resource, attributes)
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        if len(self._cache) >= self._max_cached:
            self._cache.clear()
        found = self._cache[cache_key] = self._resolve(name, variants, resource, attributes)
        return found

    def _resolve(
        self,
        name: str,
        variants: tuple[Variant, ...],
        resource: tuple[tuple[str, str], ...],
        attributes: tuple[tuple[str, str], ...],
    ) -> tuple[SeriesKey, ...] | LabelProblem:
        base = metric_name(name)
        labels = sanitized_labels(resource)
        labels.update(sanitized_labels(attributes))
        keys = []
        for suffix, extra in variants:
            full = base + suffix
            variant = {**labels, **dict(extra)}
            problem = metric_name_problem(full, self._limits) or label_problem(
                variant.items(), self._limits, count=len(variant)
            )
            if problem is not None:
                return problem
            keys.append(SeriesKey(full, tuple(sorted(variant.items()))))
        return tuple(keys)

    def _metric(
        self,
        metric: Any,
        out: GatheredPoints,
        local: dict[tuple[Any, ...], tuple[int, ...] | None],
        family: Callable[..., tuple[int, ...] | None],
        numbers: _NumberSeries,
    ) -> int:
        kind = metric.WhichOneof("data")
        name = metric.name
        if kind == "gauge":
            return self._numbers(metric.gauge, name, out, numbers, "gauge")
        if kind == "sum":
            data = metric.sum
            temporality = data.aggregation_temporality
            if temporality == _DELTA:
                return self._numbers(data, name, out, numbers, "delta")
            if temporality == _CUMULATIVE and data.is_monotonic:
                return self._numbers(data, name, out, numbers, "counter")
            return self._numbers(data, name, out, numbers, "gauge")
        if kind == "histogram":
            data = metric.histogram
            points = data.data_points
            self._histogram(points, name, data.aggregation_temporality == _CUMULATIVE, out, local, family)
        elif kind == "exponential_histogram":
            data = metric.exponential_histogram
            points = data.data_points
            self._exponential(points, name, data.aggregation_temporality == _CUMULATIVE, out, local, family)
        elif kind == "summary":
            points = metric.summary.data_points
            self._summary(points, name, out, local, family)
        else:
            return 0
        return len(points)

    def _numbers(self, data: Any, name: str, out: GatheredPoints, numbers: _NumberSeries, kind: str) -> int:
        """The points of a gauge or a sum: the hottest path of OTLP ingestion. Their fields are read from the
        message's own serialization (upb wrote it, from a message it had parsed and checked): reading the points as
        Python objects, one wrapper per point and per attribute, cost three times as much. A point's attributes are
        known by their bytes, so that an attribute set seen before costs one dict lookup."""
        buffer = data.SerializeToString()
        columns = _number_columns(buffer) if len(buffer) >= _COLUMNS_FROM_BYTES else None
        if columns is None:
            try:
                points = _number_points(buffer)
            except (IndexError, struct.error) as exc:
                raise OtlpDecodeError(f"metric {name!r}: a data point that does not decode") from exc
            if not points:
                return 0
            attributes, starts, times, values, flags = (list(column) for column in zip(*points, strict=True))
        else:
            attributes, starts, times, values = columns
            flags = [0] * len(attributes)
        series = numbers.of(name, attributes)
        if kind == "gauge" and None not in series and not any(flags):
            out.ids.extend(series)  # type: ignore[arg-type]
            out.times.extend(times)
            out.values.extend(values)
            return len(series)
        if kind == "counter":
            self._rates(out, series, starts, times, values, flags)
            return len(series)
        for series_id, start, time, value, flag in zip(series, starts, times, values, flags, strict=True):
            if series_id is None or flag & _NO_RECORDED_VALUE:
                continue
            if kind == "delta":
                rate = _per_second(value, start, time)
                if rate is not None:
                    _add(out, series_id, time, rate)
            else:
                _add(out, series_id, time, value)
        return len(series)

    def _rates(
        self,
        out: GatheredPoints,
        series: list[int | None],
        starts: list[int],
        times: list[int],
        values: list[float],
        flags: list[int],
    ) -> None:
        """``_rate`` of many counter points, its loop inlined (a call per point cost a third of a counter's time)."""
        keys, state, isfinite = out.keys, self._state, math.isfinite
        items = state.items
        add_id, add_time, add_value = out.ids.append, out.times.append, out.values.append
        for series_id, start, time, value, flag in zip(series, starts, times, values, flags, strict=True):
            if series_id is None or flag & _NO_RECORDED_VALUE or not time or not isfinite(value):
                continue
            key = keys[series_id]
            # Updated in place: one lookup a point (hashing a series key is the largest part of a counter's cost).
            previous = items.get(key)
            if previous is None:
                items[key] = [start, time, value]
                continue
            previous_start, previous_time, previous_value = previous
            if time <= previous_time:
                # Older than what the series already had: the newer point stays the base.
                continue
            previous[0], previous[1], previous[2] = start, time, value
            increase = value if (start != previous_start or value < previous_value) else value - previous_value
            add_id(series_id)
            add_time(time)
            add_value(increase / ((time - previous_time) * _NS))
        state.trim()

    def _rate(self, out: GatheredPoints, series_id: int, start: int, time: int, value: float) -> None:
        """The per-second rate of a cumulative value since the series' previous point."""
        self._rates(out, [series_id], [start], [time], [value], [0])

    def _histogram(
        self,
        points: Iterable[Any],
        name: str,
        cumulative: bool,
        out: GatheredPoints,
        local: dict[tuple[Any, ...], tuple[int, ...] | None],
        family: Callable[..., tuple[int, ...] | None],
    ) -> None:
        for point in points:
            ids = _ids(local, family, name, _HISTOGRAM, point)
            if ids is None or point.flags & _NO_RECORDED_VALUE:
                continue
            bounds = tuple(point.explicit_bounds)
            counts = tuple(point.bucket_counts)
            if counts and len(counts) != len(bounds) + 1:
                raise OtlpDecodeError(
                    f"histogram {name!r}: {len(counts)} bucket counts for {len(bounds)} bounds (expected one more)"
                )
            if any(not math.isfinite(bound) for bound in bounds) or any(b >= a for b, a in pairwise(bounds)):
                raise OtlpDecodeError(f"histogram {name!r}: bucket bounds must be finite and increasing")
            self._distribution(out, ids, point, cumulative, counts, partial(_explicit_buckets, bounds), bounds)

    def _exponential(
        self,
        points: Iterable[Any],
        name: str,
        cumulative: bool,
        out: GatheredPoints,
        local: dict[tuple[Any, ...], tuple[int, ...] | None],
        family: Callable[..., tuple[int, ...] | None],
    ) -> None:
        for point in points:
            ids = _ids(local, family, name, _HISTOGRAM, point)
            if ids is None or point.flags & _NO_RECORDED_VALUE:
                continue
            scale = point.scale
            if not _MIN_SCALE <= scale <= _MAX_SCALE:
                raise OtlpDecodeError(f"exponential histogram {name!r}: scale {scale} outside [-10, 20]")
            offsets = (point.positive.offset, point.negative.offset)
            shape = ("exponential", scale, *offsets, point.zero_threshold)
            positive, negative = tuple(point.positive.bucket_counts), tuple(point.negative.bucket_counts)
            counts = (*reversed(negative), point.zero_count, *positive)
            buckets = partial(_exponential_buckets, scale, point.zero_threshold, offsets, len(positive), len(negative))
            self._distribution(out, ids, point, cumulative, counts, buckets, shape)

    def _distribution(
        self,
        out: GatheredPoints,
        ids: tuple[int, ...],
        point: Any,
        cumulative: bool,
        counts: Sequence[int],
        buckets: Callable[[], tuple[FloatArray, FloatArray]],
        shape: tuple[Any, ...],
    ) -> None:
        """``_count``, ``_sum`` and the quantiles of one histogram point; ``buckets`` gives each bucket's lower and
        upper bounds, ``shape`` says whether two points' buckets are the same ones."""
        count_id, sum_id, *quantile_ids = ids
        start, time = point.start_time_unix_nano, point.time_unix_nano
        interval = counts
        if cumulative:
            self._rate(out, count_id, start, time, float(point.count))
            self._rate(out, sum_id, start, time, point.sum)
            state_key = (out.keys[count_id], "buckets")
            previous = self._state.swap(state_key, (start, time, shape, counts))
            if previous is None:
                return
            previous_start, previous_time, previous_shape, previous_counts = previous
            if time <= previous_time:
                # Older than what the series already had: keep the newer point as the base.
                self._state.swap(state_key, previous)
                return
            if previous_shape != shape or len(previous_counts) != len(counts):
                # Other buckets than the previous point's: no interval to estimate over.
                return
            difference = [now - before for now, before in zip(counts, previous_counts, strict=True)]
            # A new start time or a lower count is a reset: the counts since the start are the interval's.
            if start == previous_start and all(d >= 0 for d in difference):
                interval = difference
        else:
            for series_id, value in ((count_id, float(point.count)), (sum_id, point.sum)):
                rate = _per_second(value, start, time)
                if rate is not None:
                    _add(out, series_id, time, rate)
        if not any(interval):
            return
        lowers, uppers = buckets()
        weights = np.array(interval, dtype=np.float64)
        for series_id, q in zip(quantile_ids, HISTOGRAM_QUANTILES, strict=True):
            _add(out, series_id, time, _quantile(q, lowers, uppers, weights))

    def _summary(
        self,
        points: Iterable[Any],
        name: str,
        out: GatheredPoints,
        local: dict[tuple[Any, ...], tuple[int, ...] | None],
        family: Callable[..., tuple[int, ...] | None],
    ) -> None:
        for point in points:
            quantiles = [(q.quantile, q.value) for q in point.quantile_values]
            variants: tuple[Variant, ...] = (
                ("_count", ()),
                ("_sum", ()),
                *(("", (("quantile", repr(q)),)) for q, _ in quantiles),
            )
            ids = _ids(local, family, name, variants, point)
            if ids is None or point.flags & _NO_RECORDED_VALUE:
                continue
            start, time = point.start_time_unix_nano, point.time_unix_nano
            self._rate(out, ids[0], start, time, float(point.count))
            self._rate(out, ids[1], start, time, point.sum)
            for series_id, (_, value) in zip(ids[2:], quantiles, strict=True):
                _add(out, series_id, time, value)


def _ids(
    local: dict[tuple[Any, ...], tuple[int, ...] | None],
    family: Callable[..., tuple[int, ...] | None],
    name: str,
    variants: tuple[Variant, ...],
    point: Any,
) -> tuple[int, ...] | None:
    attributes = _attributes(point.attributes)
    ids = local.get((name, variants, attributes), ())
    return family(name, variants, attributes) if ids == () else ids


def _add(out: GatheredPoints, series_id: int, time: int, value: float) -> None:
    out.ids.append(series_id)
    out.times.append(time)
    out.values.append(value)


def _per_second(value: float, start: int, time: int) -> float | None:
    if not start or time <= start:
        return None
    return value / ((time - start) * _NS)


def _attributes(attributes: Iterable[Any]) -> tuple[tuple[str, str], ...]:
    # Most attribute values are strings: a non-empty string_value needs no look at the oneof.
    return tuple([(kv.key, kv.value.string_value or _text(kv.value, 0)) for kv in attributes])


def _text(value: Any, depth: int) -> str:
    """An attribute value that is not a (non-empty) string, as text."""
    kind = value.WhichOneof("value")
    if kind is None or kind == "string_value":
        return ""
    return orjson.dumps(_plain(value, depth)).decode() if kind in ("array_value", "kvlist_value") else _scalar(value)


def _scalar(value: Any) -> str:
    kind = value.WhichOneof("value")
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return repr(value.double_value)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return str(value.string_value)


def _plain(value: Any, depth: int) -> object:
    if depth >= _MAX_NESTING:
        raise OtlpDecodeError(f"an attribute value nested deeper than {_MAX_NESTING} levels")
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_plain(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _plain(kv.value, depth + 1) for kv in value.kvlist_value.values}
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else repr(number)
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return bool(value.bool_value)
    return _scalar(value) if kind is not None else None


def _explicit_buckets(bounds: tuple[float, ...]) -> tuple[FloatArray, FloatArray]:
    uppers = np.array([*bounds, math.inf], dtype=np.float64)
    lowers = np.empty_like(uppers)
    lowers[1:] = uppers[:-1]
    # As Prometheus: the first bucket starts at 0 when its upper bound is positive (observations are mostly
    # durations and sizes); otherwise its estimate is its upper bound.
    lowers[0] = 0.0 if len(bounds) and bounds[0] > 0 else -math.inf
    return lowers, uppers


def _exponential_buckets(
    scale: int, zero: float, offsets: tuple[int, int], positive: int, negative: int
) -> tuple[FloatArray, FloatArray]:
    """Bounds of the buckets ordered from the most negative: negative buckets, the zero bucket, positive ones.
    Bucket ``i`` of the positive range covers ``(base**i, base**(i+1)]`` with ``base = 2**(2**-scale)``."""
    step = 2.0**-scale
    with np.errstate(over="ignore"):
        positive_edges = np.exp2((offsets[0] + np.arange(positive + 1, dtype=np.float64)) * step)
        negative_edges = np.exp2((offsets[1] + np.arange(negative + 1, dtype=np.float64)) * step)
    lowers = np.concatenate((-negative_edges[1:][::-1], [-zero], positive_edges[:-1]))
    uppers = np.concatenate((-negative_edges[:-1][::-1], [zero], positive_edges[1:]))
    return lowers, uppers


def _quantile(q: float, lowers: FloatArray, uppers: FloatArray, counts: FloatArray) -> float:
    """The ``q`` quantile of observations spread evenly within each bucket (``histogram_quantile``'s estimate)."""
    cumulative = np.cumsum(counts)
    rank = q * float(cumulative[-1])
    bucket = int(np.searchsorted(cumulative, rank, side="left"))
    bucket = min(bucket, len(counts) - 1)
    lower, upper = float(lowers[bucket]), float(uppers[bucket])
    if math.isinf(upper):
        return lower
    if math.isinf(lower):
        return upper
    below = float(cumulative[bucket - 1]) if bucket else 0.0
    inside = float(counts[bucket])
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside


class _NumberSeries:
    """The series of number points within one resource of one request, found by the points' serialized attributes:
    per request, an attribute set's bytes to its series' index; across requests (``known``, the flattener's, by
    metric name and the resource's bytes), to its series key."""

    def __init__(
        self,
        flattener: OtlpFlattener,
        resource: tuple[tuple[str, str], ...],
        resource_bytes: bytes,
        out: GatheredPoints,
        family: Callable[..., tuple[int, ...] | None],
    ) -> None:
        self._flattener = flattener
        self._resource = resource
        self._resource_bytes = resource_bytes
        self._out = out
        self._family = family
        self._local: dict[str, dict[bytes, int]] = {}

    def of(self, name: str, attributes: list[bytes]) -> list[int | None]:
        local = self._local.get(name)
        if local is None:
            local = self._local[name] = {}
        get = local.get
        series: list[int | None] = []
        append = series.append
        for raw in attributes:
            found = get(raw, -1)
            append(found if found >= 0 else None if found == _NO_VALUE else self._resolve(name, raw, local))
        return series

    def _resolve(self, name: str, raw: bytes, local: dict[bytes, int]) -> int | None:
        known = self._flattener.known(name, self._resource_bytes)
        found = known.get(raw)
        if found is None:
            point = _ATTRIBUTES_OF(raw)
            if point.flags & _NO_RECORDED_VALUE:
                # Only keys read by ``_number_columns`` hold the flags: such a point has no value.
                local[raw] = _NO_VALUE
                return None
            attributes = _attributes(point.attributes)
            family = self._flattener.family_of(name, _PLAIN, self._resource, attributes)
            found = attributes if isinstance(family, LabelProblem) else family[0]
            self._flattener.remember(known, raw, found)
        if isinstance(found, SeriesKey):
            series_id = local[raw] = self._out.id_of(found)
            return series_id
        # Refused: counted at each of its points, through the path that records why.
        self._family(name, _PLAIN, found)
        return None


_ATTRIBUTES_OF = NumberDataPoint.FromString
# In a request's map of attribute bytes to series indexes: a point flagged "no recorded value".
_NO_VALUE = -2
# The layout upb writes a number point in (fields in number order): start time, time, value, then the attributes
# and the flags. Its first 27 bytes are the three fixed-size fields with their tags.
_FIXED_PART = 27
_OFFSETS_8 = np.arange(8)
# numpy's cost per call outweighs what it saves below about 40 points (4 KB) a metric: smaller ones are read one
# field at a time (``benchmarks.formats`` with ``--series 2``, ``20`` and ``80`` shows the crossover).
_COLUMNS_FROM_BYTES = 4096


def _number_columns(buffer: bytes) -> tuple[list[bytes], list[int], list[int], list[float]] | None:
    """The data points of a serialized Gauge or Sum whose every point has upb's usual layout (a start time, a time,
    a value, no exemplar), read as columns: each point's bytes past its fixed part (its attributes, and its flags
    if any: the key of its attribute set), start time, time and value. None if a point has another layout (then
    ``_number_points`` reads them one field at a time). The fixed fields of all points are gathered by numpy: only
    the walk from one point to the next is Python's."""
    bodies: list[int] = []
    ends: list[int] = []
    index, end = 0, len(buffer)
    while index < end and buffer[index] == 0x0A:
        length = buffer[index + 1] if index + 1 < end else 0x80
        if length < 0x80:
            index += 2
        else:
            try:
                length, index = _varint(buffer, index + 1)
            except IndexError:
                return None
        bodies.append(index)
        index += length
        ends.append(index)
    if not bodies or index > end:
        return None
    data = np.frombuffer(buffer, dtype=np.uint8)
    starts, stops = np.array(bodies), np.array(ends)
    if (stops - starts).min() < _FIXED_PART:
        return None
    value_tags = data[starts + 18]
    is_double = value_tags == _AS_DOUBLE
    has_more = stops > starts + _FIXED_PART
    if not (
        (data[starts] == _START).all()
        and (data[starts + 9] == _TIME).all()
        and (is_double | (value_tags == _AS_INT)).all()
        and not (data[starts[has_more] + _FIXED_PART] == _EXEMPLAR).any()
    ):
        return None
    gather = starts[:, None] + _OFFSETS_8
    start_times = data[gather + 1].view("<u8").ravel()
    times = data[gather + 10].view("<u8").ravel()
    raw_values = data[gather + 19]
    values = np.where(is_double, raw_values.view("<f8").ravel(), raw_values.view("<i8").ravel().astype(np.float64))
    keys = [buffer[first:last] for first, last in zip((starts + _FIXED_PART).tolist(), ends, strict=True)]
    return keys, start_times.tolist(), times.tolist(), values.tolist()


_FIXED64 = struct.Struct("<Q").unpack_from
_SFIXED64 = struct.Struct("<q").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from
# Tags of NumberDataPoint's fields (field number << 3 | wire type).
_START, _TIME, _AS_DOUBLE, _EXEMPLAR, _AS_INT, _ATTRIBUTE, _FLAGS = 0x11, 0x19, 0x21, 0x2A, 0x31, 0x3A, 0x40


def _number_points(buffer: bytes) -> list[tuple[bytes, int, int, float, int]]:
    """The data points (field 1) of a serialized Gauge or Sum: each one's attributes (their serialized fields, the
    key of its attribute set), start time, time, value and flags."""
    points: list[tuple[bytes, int, int, float, int]] = []
    index, end = 0, len(buffer)
    while index < end:
        tag = buffer[index]
        if tag != 0x0A:
            tag, index = _varint(buffer, index)
            index = _skip(buffer, index, tag)
            continue
        # Lengths below 128 (most points, every attribute of a usual size) are one byte: read inline, as a call
        # per length cost a fifth of the whole.
        length = buffer[index + 1]
        if length < 0x80:
            index += 2
        else:
            length, index = _varint(buffer, index + 1)
        stop = index + length
        first = last = index
        start = time = flag = 0
        value = 0.0
        while index < stop:
            tag = buffer[index]
            if tag == _TIME:
                time = _FIXED64(buffer, index + 1)[0]
                index += 9
            elif tag == _AS_DOUBLE:
                value = _DOUBLE(buffer, index + 1)[0]
                index += 9
            elif tag == _ATTRIBUTE:
                size = buffer[index + 1]
                if size < 0x80:
                    after = index + 2
                else:
                    size, after = _varint(buffer, index + 1)
                if first == last:
                    first = index
                index = last = after + size
            elif tag == _START:
                start = _FIXED64(buffer, index + 1)[0]
                index += 9
            elif tag == _AS_INT:
                value = float(_SFIXED64(buffer, index + 1)[0])
                index += 9
            elif tag == _FLAGS:
                flag, index = _varint(buffer, index + 1)
            else:
                tag, index = _varint(buffer, index)
                index = _skip(buffer, index, tag)
        if index != stop:
            raise IndexError("a data point runs past its length")
        points.append((buffer[first:last], start, time, value, flag))
    return points


def _varint(buffer: bytes, index: int) -> tuple[int, int]:
    byte = buffer[index]
    if byte < 0x80:
        return byte, index + 1
    result, shift = byte & 0x7F, 7
    while True:
        index += 1
        byte = buffer[index]
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, index + 1
        shift += 7


def _skip(buffer: bytes, index: int, tag: int) -> int:
    """The index past the value of a field with ``tag`` (one the reader does not need)."""
    wire = tag & 7
    if wire == 0:
        return _varint(buffer, index)[1]
    if wire == 1:
        return index + 8
    if wire == 2:
        size, index = _varint(buffer, index)
        return index + size
    if wire == 5:
        return index + 4
    raise IndexError(f"wire type {wire}")
