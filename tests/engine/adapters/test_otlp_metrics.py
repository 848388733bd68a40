"""OTLP metrics flattened into series: labels, each metric type, counters' rates, and hostile requests."""

from __future__ import annotations

import math

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

from engine.adapters.otlp.metrics import (
    Flattened,
    OtlpDecodeError,
    OtlpFlattener,
    count_points,
    parse_json,
    parse_proto,
)
from engine.domain.events import SeriesKey
from engine.domain.limits import LabelLimits
from tests.support.otlp_requests import (
    DELTA,
    T0,
    S,
    any_value,
    gauge,
    histogram,
    number,
    request,
    sum_metric,
)
from tests.support.protobuf_wire import field


def _flatten(*requests: ExportMetricsServiceRequest, flattener: OtlpFlattener | None = None) -> Flattened:
    flattener = flattener or OtlpFlattener(LabelLimits())
    result = Flattened([])
    for message in requests:
        result = flattener.flatten(parse_proto(message.SerializeToString()))
    return result


def _points(result: Flattened) -> dict[SeriesKey, list[tuple[float, float]]]:
    return {series: [(t, v) for t, v in points.tolist()] for series, points in result.runs}


def test_a_gauge_is_its_values_labelled_by_resource_and_point_attributes() -> None:
    metric = gauge(
        "http.server.active_requests",
        [number(T0 + 2 * S, 7, {"http.route": "/b"}), number(T0 + S, 3.5, {"http.route": "/b"})],
    )
    result = _flatten(request(metric, resource={"service.name": "api", "host.name": "web-1"}))
    labels = {"service_name": "api", "host_name": "web-1", "http_route": "/b"}
    series = SeriesKey.of("http_server_active_requests", labels)
    # In time order, whatever the order sent.
    assert _points(result) == {series: [(1_700_000_001.0, 3.5), (1_700_000_002.0, 7.0)]}
    assert (result.points, result.dropped, result.refused) == (2, 0, [])


def test_label_names_are_sanitised_and_colliding_values_joined() -> None:
    labels = {"1st": "a", "_private": "b", "a.b": "x", "a_b": "y", "empty": "", "ok": "z"}
    result = _flatten(request(gauge("m", [number(T0, 1.0, labels)]), resource={"ok": "resource"}))
    [series] = _points(result)
    # The point's attribute wins over the resource's; an empty value is no label.
    assert series.label_map == {"key_1st": "a", "key_private": "b", "a_b": "x;y", "ok": "z"}


def test_attribute_values_that_are_not_strings_are_written_as_text() -> None:
    labels = {"flag": True, "count": 3, "ratio": 0.5, "raw": b"\x00\x01", "list": [1, "a"], "map": {"k": False}}
    [series] = _points(_flatten(request(gauge("m", [number(T0, 1.0, labels)]), resource={})))
    assert series.label_map == {
        "flag": "true",
        "count": "3",
        "ratio": "0.5",
        "raw": "AAE=",
        "list": '[1,"a"]',
        "map": '{"k":false}',
    }


def test_a_monotonic_cumulative_sum_becomes_its_rate_per_second() -> None:
    flattener = OtlpFlattener(LabelLimits())
    first = _flatten(request(sum_metric("requests", [number(T0 + 10 * S, 100)])), flattener=flattener)
    # Nothing before the first point: no rate for it.
    assert first.runs == []
    later = request(sum_metric("requests", [number(T0 + 20 * S, 150), number(T0 + 30 * S, 300)]))
    assert list(_points(_flatten(later, flattener=flattener)).values()) == [
        [(1_700_000_020.0, 5.0), (1_700_000_030.0, 15.0)]
    ]
    # A lower value (a restart) is a reset: the increase is the new value.
    reset = request(sum_metric("requests", [number(T0 + 40 * S, 20)]))
    assert list(_points(_flatten(reset, flattener=flattener)).values()) == [[(1_700_000_040.0, 2.0)]]


def test_a_non_monotonic_cumulative_sum_is_a_gauge_and_a_delta_sum_a_rate() -> None:
    up_down = sum_metric("queue", [number(T0 + S, -4)], monotonic=False)
    delta = sum_metric("bytes", [number(T0 + 10 * S, 50, start=T0)], temporality=DELTA)
    points = _points(_flatten(request(up_down, delta, resource={})))
    assert points == {SeriesKey.of("queue"): [(1_700_000_001.0, -4.0)], SeriesKey.of("bytes"): [(1_700_000_010.0, 5.0)]}


def test_a_histogram_gives_rates_of_count_and_sum_and_quantiles_of_the_interval() -> None:
    flattener = OtlpFlattener(LabelLimits())
    bounds = [0.1, 0.2, 0.4]
    first = request(histogram("latency", T0 + 10 * S, bounds, [5, 0, 0, 0], total=0.25), resource={})
    _flatten(first, flattener=flattener)
    later = request(histogram("latency", T0 + 20 * S, bounds, [5, 10, 0, 0], total=1.75), resource={})
    points = _points(_flatten(later, flattener=flattener))
    t = 1_700_000_020.0
    assert points[SeriesKey.of("latency_count")] == [(t, 1.0)]
    assert points[SeriesKey.of("latency_sum")] == [(t, pytest.approx(0.15))]
    # Only the interval's ten observations, all in (0.1, 0.2]: interpolated within that bucket.
    assert points[SeriesKey.of("latency", {"quantile": "0.5"})] == [(t, pytest.approx(0.15))]
    assert points[SeriesKey.of("latency", {"quantile": "0.99"})] == [(t, pytest.approx(0.199))]


def test_a_delta_histogram_estimates_from_its_own_buckets_and_the_inf_bucket_gives_the_top_bound() -> None:
    metric = histogram("size", T0 + 10 * S, [1.0, 2.0], [0, 1, 99], total=500.0, temporality=DELTA)
    points = _points(_flatten(request(metric, resource={})))
    assert points[SeriesKey.of("size", {"quantile": "0.99"})] == [(1_700_000_010.0, 2.0)]
    assert points[SeriesKey.of("size_count")] == [(1_700_000_010.0, 10.0)]


def test_an_exponential_histogram_estimates_quantiles_from_its_buckets() -> None:
    metric = pb.Metric(name="latency")
    metric.exponential_histogram.aggregation_temporality = DELTA
    point = metric.exponential_histogram.data_points.add(
        time_unix_nano=T0 + S, start_time_unix_nano=T0, count=100, sum=150.0, scale=0, zero_count=0
    )
    # Scale 0: bucket i covers (2**i, 2**(i+1)]; all hundred observations in (1, 2].
    point.positive.offset = 0
    point.positive.bucket_counts.extend([100])
    points = _points(_flatten(request(metric, resource={})))
    assert points[SeriesKey.of("latency", {"quantile": "0.5"})] == [(1_700_000_001.0, 1.5)]
    assert points[SeriesKey.of("latency_count")] == [(1_700_000_001.0, 100.0)]


def test_a_summary_gives_its_quantiles_and_rates_of_count_and_sum() -> None:
    flattener = OtlpFlattener(LabelLimits())

    def summary(time: int, count: int, quantile: float) -> ExportMetricsServiceRequest:
        metric = pb.Metric(name="rpc")
        point = metric.summary.data_points.add(time_unix_nano=time, start_time_unix_nano=T0, count=count, sum=count)
        point.quantile_values.add(quantile=0.99, value=quantile)
        return request(metric, resource={})

    _flatten(summary(T0 + S, 10, 0.3), flattener=flattener)
    points = _points(_flatten(summary(T0 + 3 * S, 30, 0.4), flattener=flattener))
    assert points == {
        SeriesKey.of("rpc_count"): [(1_700_000_003.0, 10.0)],
        SeriesKey.of("rpc_sum"): [(1_700_000_003.0, 10.0)],
        SeriesKey.of("rpc", {"quantile": "0.99"}): [(1_700_000_003.0, 0.4)],
    }


def test_points_without_a_value_are_dropped() -> None:
    metric = gauge(
        "m",
        [
            number(T0 + S, 1.0, flags=pb.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK),
            number(T0 + 2 * S, math.nan),
            number(T0 + 3 * S, math.inf),
            number(0, 1.0),
            number(T0 + 4 * S, 2.0),
        ],
    )
    result = _flatten(request(metric, resource={}))
    assert _points(result) == {SeriesKey.of("m"): [(1_700_000_004.0, 2.0)]}
    assert (result.points, result.dropped) == (5, 3)


def test_series_breaking_the_label_rules_are_refused_with_their_points_and_the_others_taken() -> None:
    flattener = OtlpFlattener(LabelLimits(max_labels=2, max_value_length=8))
    long = {"a": "x" * 9}
    metric = gauge("m", [number(T0, 1.0, {"a": "1"}), number(T0, 1.0, long), number(T0 + S, 2.0, long)])
    result = _flatten(request(metric, resource={}), flattener=flattener)
    assert list(_points(result)) == [SeriesKey.of("m", {"a": "1"})]
    [(problem, count)] = result.refused
    assert (problem.kind, problem.label, count) == ("value_too_long", "a", 2)


def test_the_state_of_rated_series_is_bounded() -> None:
    flattener = OtlpFlattener(LabelLimits(), max_state=2)
    for time in (T0 + S, T0 + 2 * S):
        points = [number(time, 10, {"n": str(n)}) for n in range(5)]
        _flatten(request(sum_metric("c", points), resource={}), flattener=flattener)
    assert flattener.state_size == 2


def test_json_requests_take_int64_strings_enum_names_and_numbers() -> None:
    message = request(sum_metric("requests", [number(T0 + S, 5)]), resource={})
    document = json_format.MessageToDict(message)
    assert document["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]["dataPoints"][0]["asInt"] == "5"
    assert parse_json(orjson.dumps(document)) == message
    metric = document["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["sum"]
    metric["aggregationTemporality"] = 2
    metric["unknownField"] = {"ignored": True}
    assert parse_json(orjson.dumps(document)) == message
    assert count_points(message) == 1


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xff\xff", "not an OTLP"),
        # A length prefix far past the end of the body.
        (b"\x0a\xff\xff\xff\xff\x0f", "not an OTLP"),
    ],
)
def test_undecodable_protobuf_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(OtlpDecodeError, match=reason):
        parse_proto(body)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "must be an object"),
        (b'{"resourceMetrics": 5}', "not an OTLP"),
        (
            b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [{"gauge": {"dataPoints": [{"asInt": "x"}]}}]}]}]}',
            "not an OTLP",
        ),
        (b'{"resourceMetrics": [' * 2000 + b"]" * 2000 + b"}", "not JSON"),
        ('{"a": "\ud800"}'.encode("utf-8", "surrogatepass"), "not JSON"),
    ],
)
def test_undecodable_json_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(OtlpDecodeError, match=reason):
        parse_json(body)


def test_protobuf_nested_past_the_parser_limit_is_refused() -> None:
    # An attribute value that is an array holding an array, two hundred deep (written by hand: the classes
    # themselves refuse to build it).
    value = any_value("leaf").SerializeToString()
    for _ in range(200):
        value = field(5, field(1, value))
    attribute = field(1, b"deep") + field(2, value)
    body = field(1, field(1, field(1, attribute)))
    with pytest.raises(OtlpDecodeError, match="not an OTLP"):
        parse_proto(body)


def test_attribute_values_nested_too_deep_are_refused() -> None:
    value: object = "leaf"
    for _ in range(20):
        value = [value]
    with pytest.raises(OtlpDecodeError, match="nested deeper"):
        _flatten(request(gauge("m", [number(T0, 1.0, {"deep": value})])))


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        (histogram("h", T0 + S, [1.0, 2.0], [1, 2]), "bucket counts"),
        (histogram("h", T0 + S, [2.0, 1.0], [1, 2, 3]), "increasing"),
        (histogram("h", T0 + S, [1.0, math.inf], [1, 2, 3]), "finite"),
    ],
)
def test_inconsistent_histograms_are_refused(metric: pb.Metric, reason: str) -> None:
    with pytest.raises(OtlpDecodeError, match=reason):
        _flatten(request(metric))


def test_exponential_histograms_with_an_undefined_scale_or_huge_offsets_do_not_break_the_flattener() -> None:
    metric = pb.Metric(name="h")
    metric.exponential_histogram.aggregation_temporality = DELTA
    point = metric.exponential_histogram.data_points.add(time_unix_nano=T0 + S, start_time_unix_nano=T0, scale=40)
    with pytest.raises(OtlpDecodeError, match="scale"):
        _flatten(request(metric))
    point.scale = -10
    point.positive.offset = 2**31 - 1
    point.positive.bucket_counts.extend([5, 5])
    point.count = 10
    # Bounds past the float range: the estimate is not finite, and dropped.
    result = _flatten(request(metric, resource={}))
    assert SeriesKey.of("h", {"quantile": "0.5"}) not in _points(result)
    assert result.dropped == 2


def test_a_huge_count_of_points_is_counted_before_flattening() -> None:
    metric = gauge("m", [number(T0 + n, 1.0) for n in range(1, 20_001)])
    assert count_points(request(metric)) == 20_000


def test_large_metrics_read_as_columns_give_what_small_ones_give() -> None:
    # A hundred points of about 60 bytes: past the size from which a metric's points are read as columns.
    points = [
        number(T0 + (n // 10 + 1) * S, n if n % 2 else n + 0.5, {"pod": f"pod-{n % 10:03d}", "zone": "eu-west-1a"})
        for n in range(100)
    ]
    points[7].flags = pb.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
    large = _points(_flatten(request(gauge("m", points), resource={})))
    small = {}
    for part in range(0, 100, 10):
        small.update(
            {
                key: small.get(key, []) + values
                for key, values in _points(_flatten(request(gauge("m", points[part : part + 10]), resource={}))).items()
            }
        )
    assert large == small
    assert len(large) == 10
    assert sum(len(values) for values in large.values()) == 99
    assert large[SeriesKey.of("m", {"pod": "pod-003", "zone": "eu-west-1a"})][0] == (1_700_000_001.0, 3.0)


def test_large_metrics_with_exemplars_or_without_start_times_are_read_field_byfield() -> None:
    points = [number(T0 + S, float(n), {"pod": f"pod-{n:03d}", "zone": "eu-west-1a"}) for n in range(100)]
    points[50].exemplars.add(time_unix_nano=T0, as_double=1.0)
    points[60].ClearField("start_time_unix_nano")
    result = _points(_flatten(request(gauge("m", points), resource={})))
    assert len(result) == 100
    assert result[SeriesKey.of("m", {"pod": "pod-050", "zone": "eu-west-1a"})] == [(1_700_000_001.0, 50.0)]
