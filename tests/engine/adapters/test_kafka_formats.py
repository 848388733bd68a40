"""Message formats of sample topics: the per-topic setting, and each format's decoder on good and hostile messages."""

from __future__ import annotations

import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

from engine.adapters.kafka.formats import FORMATS, message_decoder, topic_formats
from engine.adapters.kafka.schema import MAX_SAMPLES_PER_MESSAGE, TOO_LARGE, InvalidMessageError, MessageLimits
from engine.domain.errors import ConfigurationError
from engine.domain.events import SeriesKey
from engine.domain.limits import LabelLimits
from tests.support.otlp_requests import T0, S, gauge, number, request, sum_metric

LIMITS = MessageLimits()


def _decode(
    format_name: str, value: bytes | None, limits: MessageLimits = LIMITS
) -> dict[SeriesKey, list[list[float]]]:
    runs = message_decoder(format_name, limits)(value, None, limits)
    return {series: points.tolist() for series, points in runs}


def _fault(format_name: str, value: bytes | None, limits: MessageLimits = LIMITS) -> InvalidMessageError:
    with pytest.raises(InvalidMessageError) as caught:
        message_decoder(format_name, limits)(value, None, limits)
    return caught.value


# The setting.


def test_topics_not_named_carry_json() -> None:
    formats = topic_formats(" otel = otlp_proto ,telegraf=influx_line", ["aiops.samples", "otel", "telegraf"])
    assert formats == {"aiops.samples": "json", "otel": "otlp_proto", "telegraf": "influx_line"}
    assert topic_formats("", ["a"]) == {"a": "json"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a=protobuf", "unknown format 'protobuf' for topic 'a'"),
        ("b=json", "topic 'b' is not in AIOPS_KAFKA_TOPICS"),
        ("a", "expected topic=format"),
        ("a=json,a=otlp_json", "given twice"),
    ],
)
def test_a_wrong_setting_is_one_line_saying_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ConfigurationError, match=reason) as caught:
        topic_formats(text, ["a"])
    assert "\n" not in str(caught.value)


# Every format: the bounds every message has.


@pytest.mark.parametrize("format_name", FORMATS)
def test_every_format_refuses_tombstones_and_messages_past_the_size_bound(format_name: str) -> None:
    assert _fault(format_name, None).kind == "malformed"
    limits = MessageLimits(max_message_bytes=1024)
    assert _fault(format_name, b" " * 1025, limits).kind == TOO_LARGE


@pytest.mark.parametrize("format_name", FORMATS)
def test_every_format_refuses_bytes_that_are_not_its_encoding(format_name: str) -> None:
    fault = _fault(format_name, b"\xff\xfe\x00garbage{")
    assert fault.kind in {"malformed", "schema"}


# Influx line protocol.


def test_each_field_of_a_line_is_a_series_of_the_line_tags() -> None:
    message = (
        b"# a comment\n"
        b'cpu,host=web-1,cpu=cpu0 usage_user=12.5,usage_system=3i,busy=true,state="ok" 1700000000000000000\n'
        b"\n"
        b"cpu,host=web-1,cpu=cpu0 usage_user=10,usage_system=4u,busy=F 1699999999000000000\r\n"
    )
    labels = {"host": "web-1", "cpu": "cpu0"}
    assert _decode("influx_line", message) == {
        # Each series in time order; the string field carries no measurement.
        SeriesKey.of("cpu_usage_user", labels): [[1_699_999_999.0, 10.0], [1_700_000_000.0, 12.5]],
        SeriesKey.of("cpu_usage_system", labels): [[1_699_999_999.0, 4.0], [1_700_000_000.0, 3.0]],
        SeriesKey.of("cpu_busy", labels): [[1_699_999_999.0, 0.0], [1_700_000_000.0, 1.0]],
    }


def test_escapes_follow_the_line_protocol() -> None:
    message = (
        rb"disk\ io,path=C:\\data,mount\ point=/a\,b\=c"
        rb' read\ bytes=1,note="said \"hi\", then left" 1700000000000000000'
    )
    assert _decode("influx_line", message) == {
        SeriesKey.of("disk_io_read_bytes", {"path": "C:\\\\data", "mount_point": "/a,b=c"}): [[1_700_000_000.0, 1.0]]
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"cpu value=1", "no timestamp"),
        (b"cpu", "separated by spaces"),
        (b"cpu value=1 soon", "not an integer of nanoseconds"),
        (b"cpu value=abc 1", "is not a float"),
        (b"cpu,host value=1 1", "not key=value"),
        (b"cpu value=1i2 1", "is not a float"),
        (b"cpu value=99999999999999999999i 1", "out of its integer range"),
        (b"cpu value=-1u 1", "is not a float"),
        (b'cpu value="open 1', "not closed"),
        (b"cpu  1", "no fields"),
        (b",host=a value=1 1", "empty measurement"),
        (b"cpu =1 1", "not key=value"),
        (b"cpu value=1 " + b"9" * 30, "not an integer"),
    ],
)
def test_a_bad_line_refuses_the_whole_message_naming_the_line(line: bytes, reason: str) -> None:
    fault = _fault("influx_line", b"cpu value=1 1700000000000000000\n" + line)
    assert fault.kind == "schema"
    assert fault.reason.startswith("line 2: ")
    assert reason in fault.reason


def test_influx_series_follow_the_label_rules_and_non_finite_values_are_dropped() -> None:
    limits = MessageLimits(labels=LabelLimits(max_labels=1))
    assert _fault("influx_line", b"cpu,a=1,b=2 value=1 1", limits).kind == "labels"
    assert _fault("influx_line", b"cpu value=1 1\n" + b"\xe9", LIMITS).kind == "malformed"
    assert _decode("influx_line", b"cpu value=1e999 1700000000000000000") == {}


def test_influx_samples_per_message_are_bounded() -> None:
    fields = ",".join(f"f{n}=1" for n in range(1000)).encode()
    lines = b"\n".join(b"m " + fields + b" %d" % t for t in range(1, MAX_SAMPLES_PER_MESSAGE // 1000 + 2))
    limits = MessageLimits(max_message_bytes=len(lines) + 1)
    assert "samples" in _fault("influx_line", lines, limits).reason


# prometheus-kafka-adapter.


def _adapter(**fields: object) -> bytes:
    document = {
        "timestamp": "2023-11-14T22:13:20.5Z",
        "value": "0.25",
        "name": "http_requests_total",
        "labels": {"__name__": "http_requests_total", "job": "api", "empty": ""},
    }
    document.update(fields)
    return orjson.dumps(document)


def test_an_adapter_message_is_one_sample() -> None:
    assert _decode("prometheus_adapter_json", _adapter()) == {
        SeriesKey.of("http_requests_total", {"job": "api"}): [[1_700_000_000.5, 0.25]]
    }
    offset = _adapter(timestamp="2023-11-15T00:13:20+02:00", value="-1e3")
    assert list(_decode("prometheus_adapter_json", offset).values()) == [[[1_700_000_000.0, -1000.0]]]


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
def test_an_adapter_message_without_a_finite_value_yields_nothing(value: str) -> None:
    assert _decode("prometheus_adapter_json", _adapter(value=value)) == {}


@pytest.mark.parametrize(
    ("fields", "kind", "reason"),
    [
        ({"value": 0.25}, "schema", "number in a string"),
        ({"value": "1_000"}, "schema", "number in a string"),
        ({"value": "0x10"}, "schema", "number in a string"),
        ({"value": "1" * 100}, "schema", "number in a string"),
        ({"timestamp": 1700000000}, "schema", "RFC 3339"),
        ({"timestamp": "yesterday"}, "schema", "RFC 3339"),
        ({"timestamp": "2023-11-14T22:13:20"}, "schema", "no offset"),
        ({"name": "other"}, "schema", "is not labels.__name__"),
        ({"labels": {"job": 1}}, "schema", "object of strings"),
        ({"labels": {"__name__": "up", "bad-label": "x"}, "name": "up"}, "labels", "invalid label name"),
        ({"name": "1up", "labels": {}}, "labels", "invalid metric name"),
    ],
)
def test_a_bad_adapter_message_is_refused(fields: dict[str, object], kind: str, reason: str) -> None:
    fault = _fault("prometheus_adapter_json", _adapter(**fields))
    assert (fault.kind, reason in fault.reason) == (kind, True)


def test_adapter_messages_nested_too_deep_are_refused() -> None:
    assert _fault("prometheus_adapter_json", b"[" * 5000 + b"]" * 5000).kind == "malformed"


# OTLP on Kafka.


@pytest.mark.parametrize("format_name", ["otlp_proto", "otlp_json"])
def test_an_otlp_message_yields_every_series(format_name: str) -> None:
    message = request(gauge("m", [number(T0 + S, 1.0, {"n": "1"}), number(T0 + S, 2.0, {"n": "2"})]), resource={})
    body = message.SerializeToString() if format_name == "otlp_proto" else _json(message)
    assert _decode(format_name, body) == {
        SeriesKey.of("m", {"n": "1"}): [[1_700_000_001.0, 1.0]],
        SeriesKey.of("m", {"n": "2"}): [[1_700_000_001.0, 2.0]],
    }


def test_an_otlp_message_with_a_series_breaking_the_label_rules_is_refused_whole() -> None:
    limits = MessageLimits(labels=LabelLimits(max_value_length=4))
    message = request(gauge("m", [number(T0, 1.0, {"n": "1"}), number(T0, 2.0, {"n": "12345"})]), resource={})
    fault = _fault("otlp_proto", message.SerializeToString(), limits)
    assert fault.kind == "labels"
    assert fault.reason.startswith("1 series break the label rules")


def test_an_otlp_message_with_too_many_points_is_refused_before_flattening() -> None:
    points = [number(T0 + n, 1.0) for n in range(1, MAX_SAMPLES_PER_MESSAGE + 2)]
    body = request(gauge("m", points)).SerializeToString()
    limits = MessageLimits(max_message_bytes=len(body))
    assert "samples" in _fault("otlp_proto", body, limits).reason


def test_an_otlp_topic_rates_its_counters_across_messages() -> None:
    decode = message_decoder("otlp_proto", LIMITS)
    first = request(sum_metric("c", [number(T0 + S, 10)]), resource={}).SerializeToString()
    second = request(sum_metric("c", [number(T0 + 3 * S, 30)]), resource={}).SerializeToString()
    assert decode(first, None, LIMITS) == []
    [(series, points)] = decode(second, None, LIMITS)
    assert (series, points.tolist()) == (SeriesKey.of("c"), [[1_700_000_003.0, 10.0]])


def _json(message: ExportMetricsServiceRequest) -> bytes:
    return json_format.MessageToJson(message).encode()
