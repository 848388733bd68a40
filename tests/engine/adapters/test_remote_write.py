"""The remote_write decoders (hand-written, protobuf library) against bodies built by the encoder and by hand."""

import math
import struct
from collections.abc import Callable

import cramjam
import pytest

from engine.adapters.prometheus.remote_write import (
    DecodedWrite,
    RemoteWriteDecodeError,
    RemoteWriteTooLargeError,
    decode_write_request,
    decode_write_request_library,
    encode_write_request,
)
from engine.domain.events import MetricSample, SeriesKey
from engine.domain.limits import LabelLimits

UP = SeriesKey.of("up", {"job": "node", "instance": "a:9100"})
Decode = Callable[..., DecodedWrite]


@pytest.fixture(params=[decode_write_request, decode_write_request_library], ids=["hand-written", "library"])
def decode(request: pytest.FixtureRequest) -> Decode:
    decoder: Decode = request.param
    return decoder


def _len_field(number: int, payload: bytes) -> bytes:
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_round_trip_keeps_names_labels_values_and_millisecond_timestamps(decode: Decode) -> None:
    samples = [
        MetricSample(UP, 1_700_000_000.123, 1.0),
        MetricSample(SeriesKey.of("temperature_celsius"), 1_700_000_001.0, -12.5),
    ]
    assert decode(encode_write_request(samples)) == DecodedWrite(samples, [])


def test_unknown_fields_are_skipped_and_staleness_markers_dropped(decode: Decode) -> None:
    label = _len_field(1, _len_field(1, b"__name__") + _len_field(2, b"up"))
    stale = struct.pack("<Q", 0x7FF0000000000002)
    sample = _len_field(2, bytes([0x09]) + stale + bytes([0x10, 0x01]))
    good = _len_field(2, bytes([0x09]) + struct.pack("<d", 3.0) + bytes([0x10, 0x02]))
    # Field 3 (exemplars) and a fixed32 field 9 in the TimeSeries, field 3 (metadata) in the WriteRequest.
    series = label + sample + good + _len_field(3, b"\x00") + bytes([9 << 3 | 5]) + b"\x00\x00\x00\x00"
    body = _len_field(1, series) + _len_field(3, b"\x08\x01")
    decoded = decode(bytes(cramjam.snappy.compress_raw(body))).samples
    assert decoded == [MetricSample(SeriesKey.of("up"), 0.002, 3.0)]
    assert not any(math.isnan(s.value) for s in decoded)


@pytest.mark.parametrize(
    "body",
    [
        b"not snappy at all",
        bytes(cramjam.snappy.compress_raw(b"\x0a\x05abc")),  # length beyond the end
        bytes(cramjam.snappy.compress_raw(b"\x0a\x02\x08")),  # truncated varint inside a series
        bytes(cramjam.snappy.compress_raw(b"\x0b")),  # wire type 3 (groups) is not used by remote_write
        b"\xff\xff\xff\xff\xff\xff",  # a snappy header that is no length
    ],
)
def test_undecodable_bodies_raise_one_specific_error(decode: Decode, body: bytes) -> None:
    with pytest.raises(RemoteWriteDecodeError):
        decode(body)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"\x00\x01", "field number 0"),
        (b"\x0a\x02\x12\x05", "truncated length-delimited field"),  # a sample's length past its series
        (b"\x0a\x04\x12\x02\x09\x00", "truncated fixed64"),  # a sample value of 1 byte of 8
        (b"\x0a\x03\x1d\x00\x00", "truncated fixed32"),
        (b"\x0a\x05\x0a\x03\x0a\x01\xff", "label is not UTF-8"),
        (b"\x08" + b"\xff" * 10 + b"\x01", "truncated or overlong varint"),
    ],
)
def test_each_malformed_shape_fails_with_its_own_error(decode: Decode, payload: bytes, error: str) -> None:
    # The protobuf library says only that the wire format is corrupt, whatever the shape.
    with pytest.raises(RemoteWriteDecodeError, match=error if decode is decode_write_request else "corrupt|UTF-8"):
        decode(bytes(cramjam.snappy.compress_raw(payload)))


def test_a_label_name_sent_as_a_varint() -> None:
    body = bytes(cramjam.snappy.compress_raw(b"\x0a\x04\x0a\x02\x08\x01"))
    with pytest.raises(RemoteWriteDecodeError, match="expected a string"):
        decode_write_request(body)
    # To protobuf a field of an unexpected wire type is an unknown field: the label has no name, the series none.
    assert [problem.kind for problem in decode_write_request_library(body).refused] == ["metric_name"]


def _label(name: bytes, value: bytes) -> bytes:
    return _len_field(1, _len_field(1, name) + _len_field(2, value))


def _sample(value: float) -> bytes:
    return _len_field(2, bytes([0x09]) + struct.pack("<d", value) + bytes([0x10, 0x02]))


@pytest.mark.parametrize(
    ("labels", "kind", "label"),
    [
        (_label(b"job", b"node"), "metric_name", "__name__"),
        (_label(b"__name__", b"up") + _label(b"job", b"a") + _label(b"job", b"b"), "duplicate_label", "job"),
        (_label(b"__name__", b"up") + _label(b"", b"x"), "label_name", ""),
        (_label(b"__name__", b"up") + _label(b"__address__", b"x"), "reserved_label", "__address__"),
        (_label(b"__name__", b"up") + _label(b"job", b"a\x00b"), "label_value", "job"),
        (_label(b"__name__", b"up{") + _label(b"job", b"a"), "metric_name", "__name__"),
    ],
)
def test_a_series_breaking_the_label_rules_is_left_out_and_the_others_kept(
    decode: Decode, labels: bytes, kind: str, label: str
) -> None:
    good = _len_field(1, _label(b"__name__", b"up") + _sample(1.0))
    body = good + _len_field(1, labels + _sample(2.0)) + good
    decoded = decode(bytes(cramjam.snappy.compress_raw(body)))
    assert decoded.samples == [MetricSample(SeriesKey.of("up"), 0.002, 1.0)] * 2
    assert [(problem.kind, problem.label) for problem in decoded.refused] == [(kind, label)]


def test_label_bounds_are_the_ones_given(decode: Decode) -> None:
    series = SeriesKey.of("up", {"job": "j" * 20})
    body = encode_write_request([MetricSample(series, 1.0, 1.0)])
    assert decode(body).refused == []
    refused = decode(body, labels=LabelLimits(max_value_length=10)).refused
    assert [problem.kind for problem in refused] == ["value_too_long"]


def test_a_body_expanding_past_the_bound_is_refused_before_decompressing(decode: Decode) -> None:
    body = encode_write_request([MetricSample(SeriesKey.of("up", {"blob": "b" * 5_000}), 1.0, 1.0)])
    assert decode(body, max_decoded_bytes=6_000).refused[0].kind == "value_too_long"
    with pytest.raises(RemoteWriteTooLargeError):
        decode(body, max_decoded_bytes=4_000)


def test_samples_are_counted_as_they_are_read(decode: Decode) -> None:
    series = SeriesKey.of("up")
    body = encode_write_request([MetricSample(series, float(n), 1.0) for n in range(11)])
    assert len(decode(body, max_samples=11).samples) == 11
    with pytest.raises(RemoteWriteTooLargeError) as raised:
        decode(body, max_samples=10)
    assert (raised.value.error, raised.value.limit) == ("too_many_samples", 10)
