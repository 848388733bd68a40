"""Gauges and sums read from a request's serialization give what reading their points as objects gives: every
layout (start time or none, integer or double, exemplars, flags, long attributes), several resources and metrics of
each kind in one request, rates across requests, and the series cache dropped and refilled; bytes laid out otherwise
than upb writes them (fields split, repeated, reordered, tags in more bytes) read as a parse reads them; requests
that repeat an earlier one's layout read without a walk."""

from __future__ import annotations

import math
from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from engine.adapters.metric_names import metric_name, sanitized_labels
from engine.adapters.otlp.metrics import Flattened, OtlpFlattener, parse_proto
from engine.adapters.otlp.number_points import COUNTER, DELTA, GAUGE, number_points, walk_request
from engine.domain.events import SeriesKey
from engine.domain.limits import LabelLimits
from tests.support.otlp_requests import T0, S, attributes, gauge, histogram, number, request, sum_metric
from tests.support.protobuf_wire import field

Expected = dict[SeriesKey, list[tuple[float, float]]]
KINDS = ("gauge", "up_down", "delta", "counter")
# Short and long values: a point past 127 bytes has a two-byte length.
VALUES = st.sampled_from(["a", "b", "x" * 140])


@st.composite
def _point(draw: st.DrawFn) -> pb.NumberDataPoint:
    time = T0 + draw(st.integers(0, 5)) * S
    value = draw(st.one_of(st.integers(-5, 1000), st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf])))
    labels = {"route": draw(VALUES)} if draw(st.booleans()) else {}
    flags = pb.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK if draw(st.integers(0, 9)) == 0 else 0
    point = number(time, value, labels, start=draw(st.sampled_from([0, T0 - S, T0])), flags=flags)
    if draw(st.integers(0, 9)) == 0:
        point.exemplars.add(time_unix_nano=time, as_double=1.0)
    return point


@st.composite
def _request(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    message = ExportMetricsServiceRequest()
    for resource in range(draw(st.integers(1, 3))):
        resource_metrics = message.resource_metrics.add()
        resource_metrics.resource.attributes.extend(attributes({"host": f"h{resource % 2}"}))
        for _ in range(draw(st.integers(1, 2))):
            scope = resource_metrics.scope_metrics.add()
            for index in range(draw(st.integers(1, 4))):
                kind = draw(st.sampled_from(KINDS))
                points = draw(st.lists(_point(), max_size=6))
                name = f"m_{kind}_{index}"
                if kind == "gauge":
                    scope.metrics.append(gauge(name, points))
                else:
                    temporality = pb.AGGREGATION_TEMPORALITY_DELTA if kind == "delta" else None
                    metric = sum_metric(name, points, monotonic=kind != "up_down")
                    if temporality is not None:
                        metric.sum.aggregation_temporality = temporality
                    scope.metrics.append(metric)
    return message


class _Reference:
    """What the flattener's documentation says, computed from the points as objects, one at a time."""

    def __init__(self) -> None:
        self.bases: dict[SeriesKey, tuple[int, int, float]] = {}

    def flatten(self, message: ExportMetricsServiceRequest) -> Expected:
        out: Expected = defaultdict(list)
        counters: dict[SeriesKey, list[tuple[int, int, float]]] = defaultdict(list)
        for resource_metrics in message.resource_metrics:
            resource = [(kv.key, kv.value.string_value) for kv in resource_metrics.resource.attributes]
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    data = metric.gauge if metric.HasField("gauge") else metric.sum
                    for point in data.data_points:
                        labels = sanitized_labels(resource)
                        labels.update(sanitized_labels([(kv.key, kv.value.string_value) for kv in point.attributes]))
                        key = SeriesKey(metric_name(metric.name), tuple(sorted(labels.items())))
                        value = point.as_double if point.HasField("as_double") else float(point.as_int)
                        start, time = point.start_time_unix_nano, point.time_unix_nano
                        if point.flags & 1 or not time or not math.isfinite(value):
                            continue
                        kind = _kind(metric)
                        if kind == COUNTER:
                            counters[key].append((time, start, value))
                        elif kind == DELTA:
                            if start and time > start:
                                out[key].append((time * 1e-9, value / ((time - start) * 1e-9)))
                        else:
                            out[key].append((time * 1e-9, value))
        for key, points in counters.items():
            for time, start, value in sorted(points, key=lambda p: p[0]):
                base = self.bases.get(key)
                if base is not None and time <= base[1]:
                    continue
                self.bases[key] = (start, time, value)
                if base is None:
                    continue
                increase = value if (start != base[0] or value < base[2]) else value - base[2]
                out[key].append((time * 1e-9, increase / ((time - base[1]) * 1e-9)))
        return {key: sorted(points) for key, points in out.items() if points}


def _kind(metric: pb.Metric) -> int:
    if metric.HasField("gauge"):
        return GAUGE
    if metric.sum.aggregation_temporality == pb.AGGREGATION_TEMPORALITY_DELTA:
        return DELTA
    if metric.sum.aggregation_temporality == pb.AGGREGATION_TEMPORALITY_CUMULATIVE and metric.sum.is_monotonic:
        return COUNTER
    return GAUGE


def _flattened(flattener: OtlpFlattener, message: ExportMetricsServiceRequest) -> Expected:
    return _expected(flattener.flatten(parse_proto(message.SerializeToString())))


def _decoded(flattener: OtlpFlattener, body: bytes) -> Expected:
    """``body`` read as the Kafka and HTTP decoders read it: as a repeated layout, or parsed and read from its
    bytes."""
    return _expected(flattener.read(body, protobuf=True, check_points=lambda _: None))


def _expected(result: Flattened) -> Expected:
    assert result.samples == sum(len(points) for _, points in result.runs)
    out: Expected = {}
    for key, points in result.runs:
        out.setdefault(key, []).extend((t, v) for t, v in points.tolist())
    return {key: sorted(points) for key, points in out.items()}


def _close(left: Expected, right: Expected) -> bool:
    if left.keys() != right.keys():
        return False
    return all(
        len(left[key]) == len(right[key])
        and all(
            a == c and math.isclose(b, d, rel_tol=1e-9, abs_tol=1e-9)
            for (a, b), (c, d) in zip(left[key], right[key], strict=True)
        )
        for key in left
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_request(), min_size=1, max_size=3), st.sampled_from([1, 3, 100_000]))
def test_number_points_read_from_bytes_match_the_points_read_as_objects(
    messages: list[ExportMetricsServiceRequest], max_cached: int
) -> None:
    # A cache of one or three series is dropped within the first requests: what comes out must not change.
    flattener = OtlpFlattener(LabelLimits(), max_cached=max_cached)
    reference = _Reference()
    for message in messages:
        assert _close(_flattened(flattener, message), reference.flatten(message))


def test_the_walk_finds_every_metric_of_every_scope_and_resource() -> None:
    first = request(
        gauge("a", [number(T0 + S, 1.0)]),
        histogram("h", T0 + S, [1.0], [1, 1]),
        sum_metric("c", [number(T0 + S, 5), number(T0 + 2 * S, 6)]),
        resource={"host": "one"},
    )
    second = request(sum_metric("d", [number(T0 + S, 2.0)], temporality=pb.AGGREGATION_TEMPORALITY_DELTA))
    first.resource_metrics.extend(second.resource_metrics)
    walk = walk_request(first.SerializeToString())
    assert [(m.resource, m.name, m.kind, m.stop - m.first) for m in walk.numbers] == [
        (0, "a", GAUGE, 1),
        (0, "c", COUNTER, 2),
        (1, "d", DELTA, 1),
    ]
    assert walk.others == [(0, 0, 1)]
    assert (len(walk.resources), len(walk.starts)) == (2, 4)


def test_an_odd_metric_is_read_field_by_field_beside_regular_ones() -> None:
    odd = number(T0 + S, 7.0, {"pod": "p"})
    odd.exemplars.add(time_unix_nano=T0, as_double=1.0)
    message = request(gauge("regular", [number(T0 + S, 1.0, {"pod": "p"})]), gauge("odd", [odd]), resource={})
    result = OtlpFlattener(LabelLimits()).flatten(parse_proto(message.SerializeToString()))
    assert {key.name: points.tolist() for key, points in result.runs} == {
        "regular": [[1_700_000_001.0, 1.0]],
        "odd": [[1_700_000_001.0, 7.0]],
    }
    [(_, start, time, value, flags)] = number_points(
        message.resource_metrics[0].scope_metrics[0].metrics[1].gauge.SerializeToString()
    )
    assert (start, time, value, flags) == (T0, T0 + S, 7.0, 0)


def test_a_counter_s_points_at_one_time_are_taken_in_the_request_s_order() -> None:
    # One counter series in two scopes of a resource: the first scope's points are read as columns, the second's one
    # at a time (one carries an exemplar), so the second's are gathered first. At the repeated time the first in the
    # request wins, as the reference reader takes it.
    message = ExportMetricsServiceRequest()
    resource = message.resource_metrics.add()
    resource.resource.attributes.add(key="host").value.string_value = "h0"
    first = resource.scope_metrics.add().metrics.add(name="c")
    second = resource.scope_metrics.add().metrics.add(name="c")
    for metric in (first, second):
        metric.sum.aggregation_temporality = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
        metric.sum.is_monotonic = True
    first.sum.data_points.add(time_unix_nano=1_700_000_000 * S, as_int=0)
    first.sum.data_points.add(time_unix_nano=1_700_000_001 * S, as_int=1)
    late = second.sum.data_points.add(time_unix_nano=1_700_000_001 * S, as_int=0)
    late.exemplars.add(time_unix_nano=1_700_000_001 * S, as_double=1.0)
    flattener = OtlpFlattener(LabelLimits())
    assert _flattened(flattener, message) == _Reference().flatten(message)
    assert list(_flattened(OtlpFlattener(LabelLimits()), message).values()) == [[(1_700_000_001.0, 1.0)]]


# Ways of laying out a request's bytes that upb would not write, one a body (alone, so that none hides another
# behind a fallback that reads the whole body otherwise).
OTHER_LAYOUTS = (
    "resource split",
    "resource last",
    "data split",
    "name last",
    "data tag",
    "point tag",
    "attributes first",
    "time repeated",
    "value past attributes",
    "field tag",
)


def _other_layout(draw: st.DrawFn, message: ExportMetricsServiceRequest) -> bytes:
    """``message``'s bytes laid out as upb would not write them; a parse of them may differ from ``message`` (a
    field repeated keeps its last value), so what they hold is what their parse holds."""
    layout = draw(st.sampled_from(OTHER_LAYOUTS))
    return b"".join(field(1, _resource_metrics(draw, layout, rm)) for rm in message.resource_metrics)


def _resource_metrics(draw: st.DrawFn, layout: str, resource_metrics: pb.ResourceMetrics) -> bytes:
    scopes = b"".join(
        field(2, b"".join(field(2, _metric(draw, layout, metric)) for metric in scope.metrics))
        for scope in resource_metrics.scope_metrics
    )
    if layout == "resource split":
        # Two Resource fields: a parse merges them (their attributes one after the other).
        attributes = list(resource_metrics.resource.attributes)
        halves = [Resource(attributes=attributes[:1]), Resource(attributes=attributes[1:])]
        return b"".join(field(1, half.SerializeToString()) for half in halves) + scopes
    resource = field(1, resource_metrics.resource.SerializeToString())
    return scopes + resource if layout == "resource last" else resource + scopes


def _metric(draw: st.DrawFn, layout: str, metric: pb.Metric) -> bytes:
    number = 5 if metric.HasField("gauge") else 7
    data = metric.gauge if number == 5 else metric.sum
    extra = b""
    if number == 7:
        extra = pb.Sum(aggregation_temporality=data.aggregation_temporality, is_monotonic=data.is_monotonic)
    points = [
        field(1, _point_bytes(draw, layout, point), overlong=layout == "point tag" and draw(st.booleans()))
        for point in data.data_points
    ]
    sum_fields = extra.SerializeToString() if extra else b""
    name = field(1, metric.name.encode())
    if layout == "data split" and len(points) > 1:
        # The Gauge or Sum given twice, its points split between them: a parse merges them.
        cut = draw(st.integers(1, len(points) - 1))
        halves = [field(number, sum_fields + b"".join(points[:cut])), field(number, b"".join(points[cut:]))]
        return name + b"".join(halves)
    body = field(number, b"".join(points) + sum_fields, overlong=layout == "data tag")
    return body + name if layout == "name last" else name + body


def _point_bytes(draw: st.DrawFn, layout: str, point: pb.NumberDataPoint) -> bytes:
    canonical = point.SerializeToString()
    if not draw(st.booleans()):
        return canonical
    if layout == "attributes first":
        rest = pb.NumberDataPoint()
        rest.CopyFrom(point)
        del rest.attributes[:]
        return pb.NumberDataPoint(attributes=point.attributes).SerializeToString() + rest.SerializeToString()
    if layout == "time repeated":
        return pb.NumberDataPoint(time_unix_nano=T0 + 99 * S).SerializeToString() + canonical
    if layout == "value past attributes":
        return canonical + pb.NumberDataPoint(as_double=draw(st.floats(-1e3, 1e3))).SerializeToString()
    if layout == "field tag" and canonical:
        return bytes([canonical[0] | 0x80, 0]) + canonical[1:]
    return canonical


@st.composite
def _bodies(draw: st.DrawFn) -> list[bytes]:
    return [
        _other_layout(draw, message) if draw(st.booleans()) else message.SerializeToString()
        for message in draw(st.lists(_request(), min_size=1, max_size=3))
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_bodies(), st.sampled_from([1, 3, 100_000]))
def test_bytes_laid_out_otherwise_read_as_their_parse(bodies: list[bytes], max_cached: int) -> None:
    flattener = OtlpFlattener(LabelLimits(), max_cached=max_cached)
    reference = _Reference()
    for body in bodies:
        assert _close(_decoded(flattener, body), reference.flatten(parse_proto(body)))


@st.composite
def _rounds(draw: st.DrawFn) -> list[ExportMetricsServiceRequest]:
    """A request and the same request again with other times and values (its layout unchanged, unless a value
    turns from an integer into a double or the other way, or a flag is set)."""
    first = draw(_request())
    rounds = [first]
    for round_ in range(1, draw(st.integers(2, 4))):
        message = ExportMetricsServiceRequest()
        message.CopyFrom(first)
        for resource_metrics in message.resource_metrics:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    data = metric.gauge if metric.HasField("gauge") else metric.sum
                    for point in data.data_points:
                        point.time_unix_nano += round_ * 7 * S
                        if point.HasField("as_int"):
                            point.as_int = draw(st.integers(-5, 1000))
                        else:
                            point.as_double = draw(st.one_of(st.floats(-1e3, 1e3), st.just(math.nan)))
                        if draw(st.integers(0, 29)) == 0:
                            point.flags = pb.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
        rounds.append(message)
    return rounds


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_rounds(), st.sampled_from([1, 3, 100_000]))
def test_requests_repeating_a_layout_read_as_their_parse(
    rounds: list[ExportMetricsServiceRequest], max_cached: int
) -> None:
    flattener = OtlpFlattener(LabelLimits(), max_cached=max_cached)
    reference = _Reference()
    for message in rounds:
        assert _close(_decoded(flattener, message.SerializeToString()), reference.flatten(message))


def test_a_repeated_layout_is_read_without_a_parse_and_a_changed_one_is_not() -> None:
    def message(step: int, route: str = "/a") -> bytes:
        points = [number(T0 + step * S, float(step), {"route": route}), number(T0 + step * S, 2 * step, {"r": "b"})]
        return request(gauge("g", points[:1]), sum_metric("c", points[1:])).SerializeToString()

    flattener = OtlpFlattener(LabelLimits())
    assert flattener.repeated(message(1)) is None
    first = _decoded(flattener, message(1))
    repeated = flattener.repeated(message(2))
    assert repeated is not None
    assert repeated.points == 2
    assert {key.name: points.tolist() for key, points in repeated.runs} == {
        "g": [[T0 * 1e-9 + 2, 2.0]],
        "c": [[T0 * 1e-9 + 2, 2.0]],
    }
    # The counter's first point gave no rate; its second does, from the rate state the first left.
    assert list(first) == [SeriesKey("g", (("route", "/a"), ("service_name", "api")))]
    # Another attribute value of the same length: the bytes outside times and values differ.
    assert flattener.repeated(message(3, route="/b")) is None


def test_a_value_given_again_past_the_fixed_fields_is_the_value_read() -> None:
    # An integer value, then a double one: a parse keeps the last. The bytes past the fixed fields (the key) hold
    # only that double, laid out as upb writes it, yet they are no attribute set.
    point = number(T0 + S, 1, {}).SerializeToString() + pb.NumberDataPoint(as_double=0.5).SerializeToString()
    body = field(1, field(2, field(2, field(1, b"g") + field(5, field(1, point)))))
    assert _decoded(OtlpFlattener(LabelLimits()), body) == {SeriesKey("g", ()): [(T0 * 1e-9 + 1, 0.5)]}
