"""OTLP metrics flattened into the engine's series: one module for the Kafka formats and the OTLP/HTTP receiver.

An ``ExportMetricsServiceRequest`` (protobuf, or its proto3 JSON form) becomes runs of ``(SeriesKey, points)``, each
run one series' points in time order. What an OTLP point becomes (the README's table says the same):

- labels: the resource's attributes and the point's, names sanitised (``metric_names``), the point's winning over
  the resource's; scope attributes are left out. Values that are not strings are written as OTLP's attribute
  rules say (booleans ``true``/``false``, arrays and maps as JSON, bytes as base64).
- gauge, and a non-monotonic cumulative sum (an up-down counter): the value, under the metric's name.
- monotonic cumulative sum (a counter): its per-second rate between consecutive points of the series, under the
  metric's name. The first point of a series gives no rate; a lower value or a new start time is a reset (the
  increase is the new value). A request's points are taken in time order per series; one no later than the
  series' latest point is older data and gives nothing.
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

Gauges and sums, most points, are read from the request's serialization as columns
(``engine.adapters.otlp.number_points``), a point's series found by its attributes' bytes in a cache of series
indexes kept across requests; rates are computed for a whole request at once (``engine.adapters.otlp.counter_rates``).
A protobuf request that repeats the layout of one read before (the same series, other times and values) is read
from that layout without a parse or a walk (``engine.adapters.otlp.layouts``). Histograms and summaries are read as
objects.
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
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from engine.adapters.metric_names import metric_name, sanitized_labels
from engine.adapters.otlp.counter_rates import Bounded, CumulativePoints, rate_points
from engine.adapters.otlp.layouts import Layouts
from engine.adapters.otlp.number_points import (
    COUNTER,
    DELTA,
    GAUGE,
    NotCanonicalError,
    NumberColumns,
    NumberMetric,
    RequestWalk,
    WireError,
    number_columns,
    number_points,
    walk_request,
)
from engine.adapters.series_runs import GatheredPoints
from engine.domain.batches import FloatArray
from engine.domain.events import SeriesKey
from engine.domain.limits import LabelLimits, LabelProblem, label_problem, metric_name_problem

Run = tuple[SeriesKey, FloatArray]
# One variant of a metric's series: a name suffix and extra labels (``_count``; ``quantile="0.99"``).
Variant = tuple[str, tuple[tuple[str, str], ...]]

_CUMULATIVE = 2
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
    of their points), how many points it carried, how many of them had no usable value and how many samples the runs
    hold."""

    runs: list[Run]
    refused: list[tuple[LabelProblem, int]] = field(default_factory=list)
    points: int = 0
    dropped: int = 0
    # The points of all runs (counted once, not run by run: a request may hold a run for each of its points).
    samples: int = 0


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


class OtlpFlattener:
    """Flattens requests into runs; keeps the previous point of rated series (counters, histograms, summaries) and
    a cache of series keys, both bounded. One flattener per stream whose series it rates (a Kafka source's topic,
    the HTTP receiver)."""

    def __init__(
        self, labels: LabelLimits, *, max_state: int = _DEFAULT_MAX_STATE, max_cached: int = _DEFAULT_MAX_CACHED
    ) -> None:
        self._limits = labels
        self._state = Bounded(max_state)
        self._cache: dict[tuple[Any, ...], tuple[SeriesKey, ...] | LabelProblem] = {}
        self._max_cached = max_cached
        # Every series met gets an index that stays while the cache does, so that a number point's attribute bytes
        # lead to its series' index (``known``) without a series key hashed per request.
        self._keys: list[SeriesKey] = []
        self._index: dict[SeriesKey, int] = {}
        self._known: dict[tuple[str, bytes], dict[bytes, int]] = {}
        self._known_entries = 0
        self._layouts = Layouts()

    @property
    def state_size(self) -> int:
        """How many series' previous points are kept."""
        return len(self._state)

    def flatten(self, request: ExportMetricsServiceRequest, serialized: bytes | None = None) -> Flattened:
        """What ``request`` becomes. ``serialized``, the bytes it was parsed from (if any), is read where it is laid
        out as upb writes it (most are), which saves serializing the request again, and its layout is kept for
        ``repeated``."""
        if serialized is not None:
            try:
                return self._flatten(request, serialized, keep_layout=True)
            except NotCanonicalError:
                pass
        try:
            return self._flatten(request, request.SerializeToString(), keep_layout=False)
        except NotCanonicalError as exc:
            # Not expected of upb's own serialization; refused rather than read otherwise than a parse.
            raise OtlpDecodeError(f"not an OTLP ExportMetricsServiceRequest: {exc}") from exc

    def read(self, body: bytes, *, protobuf: bool, check_points: Callable[[int], None]) -> Flattened:
        """What a body becomes: protobuf (read from a kept layout where it repeats one) or proto3 JSON.
        ``check_points`` is given how many data points a parsed request carries before it is flattened, and raises to
        refuse it (a repeated layout holds as many points as the request it repeats, which was let through)."""
        if protobuf:
            repeated = self.repeated(body)
            if repeated is not None:
                return repeated
        request = parse_proto(body) if protobuf else parse_json(body)
        check_points(count_points(request))
        return self.flatten(request, body if protobuf else None)

    def repeated(self, body: bytes) -> Flattened | None:
        """What a protobuf ``body`` becomes if it repeats the layout of a request flattened before, with other
        times and values (``engine.adapters.otlp.layouts``); None if it does not: parse it and ``flatten`` it."""
        layout = self._layouts.find(body)
        if layout is None:
            return None
        out = GatheredPoints(_NS, keys=self._keys, index=self._index)
        cumulative = CumulativePoints()
        columns = number_columns(body, layout.starts, layout.ends)
        _number_outputs(layout.series, layout.kinds, columns, out, cumulative)
        return self._finished(Flattened([], points=layout.points), out, cumulative, {})

    def _flatten(self, request: ExportMetricsServiceRequest, buffer: bytes, *, keep_layout: bool) -> Flattened:
        try:
            walk = walk_request(buffer)
        except WireError as exc:
            raise OtlpDecodeError(f"not an OTLP ExportMetricsServiceRequest: {exc}") from exc
        if len(self._keys) > self._max_cached:
            # Dropped whole, not one by one: the indexes only save work, and refilling them is cheap. Kept layouts
            # name series by these indexes.
            self._keys, self._index = [], {}
            self._known.clear()
            self._known_entries = 0
            self._layouts.clear()
        out = GatheredPoints(_NS, keys=self._keys, index=self._index)
        cumulative = CumulativePoints()
        refused: dict[tuple[Any, ...], list[Any]] = {}
        resources = [
            _ResourceSeries(self, _attributes(_RESOURCE_OF(raw).attributes), raw, out, refused)
            for raw in walk.resources
        ]
        result = Flattened([], points=len(walk.starts))
        if walk.starts:
            columns, series, kinds = self._numbers(buffer, walk, resources, out, cumulative)
            if keep_layout and not walk.others and (series >= 0).all():
                # Only requests read whole as columns are kept (a skipped point is a refused series, a point
                # without a value or one in another layout, each of which a repeat would need read again).
                self._layouts.keep(
                    buffer, starts=walk.starts, ends=walk.ends, payloads=columns.payloads(), series=series, kinds=kinds
                )
        for resource_index, scope_index, metric_index in walk.others:
            metric = request.resource_metrics[resource_index].scope_metrics[scope_index].metrics[metric_index]
            result.points += self._distribution_metric(metric, resources[resource_index], out, cumulative)
        return self._finished(result, out, cumulative, refused)

    def _finished(
        self,
        result: Flattened,
        out: GatheredPoints,
        cumulative: CumulativePoints,
        refused: dict[tuple[Any, ...], list[Any]],
    ) -> Flattened:
        """``result`` with the counters' rates, the runs and what was dropped or refused."""
        result.dropped += rate_points(cumulative, out, self._state)
        gathered = len(out)
        result.runs, dropped = out.runs()
        result.dropped += dropped
        result.samples = gathered - dropped
        result.refused = [(problem, count) for problem, count in refused.values()]
        return result

    def known(self, name: str, resource: bytes) -> dict[bytes, int]:
        """Series indexes of a metric's number points in a resource by their serialized attributes (series taken
        only); bounded with the other cached keys."""
        found = self._known.get((name, resource))
        if found is None:
            found = self._known[(name, resource)] = {}
        return found

    def remember(
        self,
        known: dict[bytes, int],
        raw: bytes,
        found: int,
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

    def _numbers(
        self,
        buffer: bytes,
        walk: RequestWalk,
        resources: list[_ResourceSeries],
        out: GatheredPoints,
        cumulative: CumulativePoints,
    ) -> tuple[NumberColumns, np.ndarray, np.ndarray]:
        """The points of all gauges and sums: their series found by their attribute bytes, metric by metric; what
        they become computed on columns of the whole request. The columns, each point's series (-1: none, or read
        one field at a time) and kind."""
        columns = number_columns(buffer, walk.starts, walk.ends)
        irregular = np.flatnonzero(~columns.regular)
        odd: set[int] = set()
        if len(irregular):
            firsts = [metric.first for metric in walk.numbers]
            odd = set((np.searchsorted(firsts, irregular, side="right") - 1).tolist())
        ids: list[int] = []
        extend, keys = ids.extend, columns.keys(buffer, walk.ends)
        for index, metric in enumerate(walk.numbers):
            if index in odd:
                extend([-1] * (metric.stop - metric.first))
                self._odd_metric(buffer, metric, resources[metric.resource], out, cumulative)
            else:
                extend(resources[metric.resource].numbers(metric.name, keys[metric.first : metric.stop]))
        series = np.array(ids, dtype=np.int64)
        kinds = np.repeat(
            np.array([metric.kind for metric in walk.numbers], dtype=np.int8),
            [metric.stop - metric.first for metric in walk.numbers],
        )
        _number_outputs(series, kinds, columns, out, cumulative)
        return columns, series, kinds

    def _odd_metric(
        self,
        buffer: bytes,
        metric: NumberMetric,
        resource: _ResourceSeries,
        out: GatheredPoints,
        cumulative: CumulativePoints,
    ) -> None:
        """A gauge or sum with a point of an unusual layout (an exemplar, no value): read one field at a time."""
        try:
            points = number_points(buffer[metric.data[0] : metric.data[1]])
        except (IndexError, struct.error, WireError) as exc:
            raise OtlpDecodeError(f"metric {metric.name!r}: a data point that does not decode") from exc
        series = resource.numbers(metric.name, [attributes for attributes, *_ in points])
        for position, (series_id, (_, start, time, value, flags)) in enumerate(
            zip(series, points, strict=True), metric.first
        ):
            if series_id < 0 or flags & _NO_RECORDED_VALUE:
                continue
            if metric.kind == COUNTER:
                cumulative.add(series_id, start, time, value, position)
            elif metric.kind == DELTA:
                rate = _per_second(value, start, time)
                if rate is not None:
                    _add(out, series_id, time, rate)
            else:
                _add(out, series_id, time, value)

    def _distribution_metric(
        self, metric: Any, resource: _ResourceSeries, out: GatheredPoints, cumulative: CumulativePoints
    ) -> int:
        """The points of a histogram, exponential histogram or summary; how many."""
        kind = metric.WhichOneof("data")
        name = metric.name
        if kind == "histogram":
            data = metric.histogram
            points = data.data_points
            self._histogram(points, name, data.aggregation_temporality == _CUMULATIVE, out, resource, cumulative)
        elif kind == "exponential_histogram":
            data = metric.exponential_histogram
            points = data.data_points
            self._exponential(points, name, data.aggregation_temporality == _CUMULATIVE, out, resource, cumulative)
        elif kind == "summary":
            points = metric.summary.data_points
            self._summary(points, name, out, resource, cumulative)
        else:
            return 0
        return len(points)

    def _histogram(
        self,
        points: Iterable[Any],
        name: str,
        rated: bool,
        out: GatheredPoints,
        resource: _ResourceSeries,
        cumulative: CumulativePoints,
    ) -> None:
        for point in points:
            ids = resource.of_point(name, _HISTOGRAM, point)
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
            self._distribution(
                out, cumulative if rated else None, ids, point, counts, partial(_explicit_buckets, bounds), bounds
            )

    def _exponential(
        self,
        points: Iterable[Any],
        name: str,
        rated: bool,
        out: GatheredPoints,
        resource: _ResourceSeries,
        cumulative: CumulativePoints,
    ) -> None:
        for point in points:
            ids = resource.of_point(name, _HISTOGRAM, point)
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
            self._distribution(out, cumulative if rated else None, ids, point, counts, buckets, shape)

    def _distribution(
        self,
        out: GatheredPoints,
        cumulative: CumulativePoints | None,
        ids: tuple[int, ...],
        point: Any,
        counts: Sequence[int],
        buckets: Callable[[], tuple[FloatArray, FloatArray]],
        shape: tuple[Any, ...],
    ) -> None:
        """``_count``, ``_sum`` and the quantiles of one histogram point; ``buckets`` gives each bucket's lower and
        upper bounds, ``shape`` says whether two points' buckets are the same ones."""
        count_id, sum_id, *quantile_ids = ids
        start, time = point.start_time_unix_nano, point.time_unix_nano
        interval = counts
        if cumulative is not None:
            cumulative.add(count_id, start, time, float(point.count))
            cumulative.add(sum_id, start, time, point.sum)
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
        resource: _ResourceSeries,
        cumulative: CumulativePoints,
    ) -> None:
        for point in points:
            quantiles = [(q.quantile, q.value) for q in point.quantile_values]
            variants: tuple[Variant, ...] = (
                ("_count", ()),
                ("_sum", ()),
                *(("", (("quantile", repr(q)),)) for q, _ in quantiles),
            )
            ids = resource.of_point(name, variants, point)
            if ids is None or point.flags & _NO_RECORDED_VALUE:
                continue
            start, time = point.start_time_unix_nano, point.time_unix_nano
            cumulative.add(ids[0], start, time, float(point.count))
            cumulative.add(ids[1], start, time, point.sum)
            for series_id, (_, value) in zip(ids[2:], quantiles, strict=True):
                _add(out, series_id, time, value)


def _number_outputs(
    series: np.ndarray, kinds: np.ndarray, columns: NumberColumns, out: GatheredPoints, cumulative: CumulativePoints
) -> None:
    """What the number points read as columns become (a point of series -1 is skipped): gauges as they are, delta
    sums per second of their interval, counters' points kept for their rates."""
    starts, times, values = columns.start_times, columns.times, columns.values
    taken = series >= 0
    gauge = taken & (kinds == GAUGE)
    out.add_columns(series[gauge], times[gauge], values[gauge])
    # A delta point without a start time has no interval: no rate.
    delta = taken & (kinds == DELTA) & (starts > 0) & (times > starts)
    if delta.any():
        seconds = (times[delta] - starts[delta]) * _NS
        out.add_columns(series[delta], times[delta], values[delta] / seconds)
    counter = taken & (kinds == COUNTER)
    cumulative.add_columns(series[counter], starts[counter], times[counter], values[counter], np.flatnonzero(counter))


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


class _ResourceSeries:
    """The series of one resource's points within one request: for points read as objects, by their metric, variants
    and attributes; for number points, by their attributes' bytes (per request, to the series' index in ``out``;
    across requests, through the flattener's ``known`` maps by metric name and the resource's bytes, to its key).
    Points of refused series are counted in ``refused``."""

    def __init__(
        self,
        flattener: OtlpFlattener,
        resource: tuple[tuple[str, str], ...],
        resource_bytes: bytes,
        out: GatheredPoints,
        refused: dict[tuple[Any, ...], list[Any]],
    ) -> None:
        self._flattener = flattener
        self._resource = resource
        self._resource_bytes = resource_bytes
        self._out = out
        self._refused = refused
        self._families: dict[tuple[Any, ...], tuple[int, ...]] = {}

    def family(
        self, name: str, variants: tuple[Variant, ...], attributes: tuple[tuple[str, str], ...]
    ) -> tuple[int, ...] | None:
        """The indexes of a point's series (one per variant), None if they are refused (and counted)."""
        key = (name, variants, attributes)
        ids = self._families.get(key)
        if ids is not None:
            return ids
        found = self._flattener.family_of(name, variants, self._resource, attributes)
        if isinstance(found, LabelProblem):
            entry = self._refused.setdefault((name, self._resource, attributes), [found, 0])
            entry[1] += 1
            return None
        ids = self._families[key] = tuple(self._out.id_of(series) for series in found)
        return ids

    def of_point(self, name: str, variants: tuple[Variant, ...], point: Any) -> tuple[int, ...] | None:
        return self.family(name, variants, _attributes(point.attributes))

    def numbers(self, name: str, keys: list[bytes]) -> list[int]:
        """The series index of each number point of metric ``name`` given by its key (-1: none, the point is
        refused or has no value)."""
        known = self._flattener.known(name, self._resource_bytes)
        get = known.get
        series = [get(raw, -1) for raw in keys]
        if -1 in series:
            for index, found in enumerate(series):
                if found < 0:
                    series[index] = self._resolve(name, keys[index], known)
        return series

    def _resolve(self, name: str, raw: bytes, known: dict[bytes, int]) -> int:
        """A key not known yet: its series' index (remembered), or -1 (a refused series, counted; a point without
        a value; neither remembered, both rare)."""
        point = _ATTRIBUTES_OF(raw)
        if _holds_more_than_a_series(point, raw):
            # Only attributes and flags, as upb writes them, make a key that holds nothing but the series: a point
            # laid out otherwise (its time or value repeated past its attributes, say) is read from upb's bytes.
            raise NotCanonicalError("a data point laid out otherwise than upb writes it")
        if point.flags & _NO_RECORDED_VALUE:
            # Only keys read as columns hold the flags: such a point has no value.
            return -1
        ids = self.family(name, _PLAIN, _attributes(point.attributes))
        if ids is None:
            return -1
        self._flattener.remember(known, raw, ids[0])
        return ids[0]


def _holds_more_than_a_series(point: NumberDataPoint, raw: bytes) -> bool:
    """Whether a point's key (``raw``, parsed as ``point``) holds a field other than attributes and flags, or is
    laid out otherwise than upb writes them."""
    return bool(
        point.start_time_unix_nano
        or point.time_unix_nano
        or point.WhichOneof("value") is not None
        or len(point.exemplars)
        or point.SerializeToString() != raw
    )


_ATTRIBUTES_OF = NumberDataPoint.FromString
_RESOURCE_OF = Resource.FromString
