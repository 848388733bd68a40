"""OTLP metric requests for tests, built with the opentelemetry-proto classes: a point of each kind, in a resource."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2 as pb

CUMULATIVE = pb.AGGREGATION_TEMPORALITY_CUMULATIVE
DELTA = pb.AGGREGATION_TEMPORALITY_DELTA
# 2023-11-14T22:13:20Z in nanoseconds, and one second.
T0 = 1_700_000_000_000_000_000
S = 1_000_000_000


def attributes(values: Mapping[str, object]) -> list[KeyValue]:
    """Attributes of any OTLP value type: str, bool, int, float, bytes, lists and dicts."""
    return [KeyValue(key=key, value=any_value(value)) for key, value in values.items()]


def any_value(value: object) -> AnyValue:
    if isinstance(value, str):
        return AnyValue(string_value=value)
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list):
        result = AnyValue()
        result.array_value.values.extend(any_value(item) for item in value)
        return result
    if isinstance(value, dict):
        result = AnyValue()
        result.kvlist_value.values.extend(attributes(value))
        return result
    raise TypeError(f"no OTLP value for {value!r}")


def request(*metrics: pb.Metric, resource: Mapping[str, object] | None = None) -> ExportMetricsServiceRequest:
    """One resource (``service.name=api`` unless given) with one scope holding ``metrics``."""
    message = ExportMetricsServiceRequest()
    resource_metrics = message.resource_metrics.add()
    resource_metrics.resource.attributes.extend(attributes({"service.name": "api"} if resource is None else resource))
    resource_metrics.scope_metrics.add().metrics.extend(metrics)
    return message


def number(
    time: int, value: float | int, labels: Mapping[str, object] | None = None, *, start: int = T0, flags: int = 0
) -> pb.NumberDataPoint:
    point = pb.NumberDataPoint(time_unix_nano=time, start_time_unix_nano=start, flags=flags)
    point.attributes.extend(attributes(labels or {}))
    if isinstance(value, int):
        point.as_int = value
    else:
        point.as_double = value
    return point


def gauge(name: str, points: Sequence[pb.NumberDataPoint]) -> pb.Metric:
    metric = pb.Metric(name=name)
    metric.gauge.data_points.extend(points)
    return metric


def sum_metric(
    name: str, points: Sequence[pb.NumberDataPoint], *, temporality: int = CUMULATIVE, monotonic: bool = True
) -> pb.Metric:
    metric = pb.Metric(name=name)
    metric.sum.aggregation_temporality = temporality
    metric.sum.is_monotonic = monotonic
    metric.sum.data_points.extend(points)
    return metric


def histogram(
    name: str,
    time: int,
    bounds: Sequence[float],
    counts: Sequence[int],
    *,
    total: float = 0.0,
    start: int = T0,
    temporality: int = CUMULATIVE,
) -> pb.Metric:
    metric = pb.Metric(name=name)
    metric.histogram.aggregation_temporality = temporality
    metric.histogram.data_points.add(
        time_unix_nano=time,
        start_time_unix_nano=start,
        count=sum(counts),
        sum=total,
        explicit_bounds=bounds,
        bucket_counts=counts,
    )
    return metric
