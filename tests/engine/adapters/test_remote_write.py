"""The remote_write decoders, 1.0 and 2.0, against bodies built by the encoder, by the message types and by hand."""

import math
import struct
import time

import cramjam
import pytest

from engine.adapters.prometheus.remote_write import (
    MAX_SERIES_BYTES,
    V2_MAX_DECODED_BYTES,
    DecodedWrite,
    RemoteWriteDecodeError,
    RemoteWriteTooLargeError,
    decode_request_v2,
    decode_write_request,
    encode_write_request,
)
from engine.adapters.prometheus.remote_write_types import RequestV2, SampleV2, TimeSeriesV2
from engine.domain.events import MetricSample, SeriesKey
from engine.domain.limits import LabelLimits
from tests.support.protobuf_wire import field, varint

UP = SeriesKey.of("up", {"job": "node", "instance": "a:9100"})


def test_round_trip_keeps_names_labels_values_and_millisecond_timestamps() -> None:
    samples = [
        MetricSample(UP, 1_700_000_000.123, 1.0),
        MetricSample(SeriesKey.of("temperature_celsius"), 1_700_000_001.0, -12.5),
    ]
    assert decode_write_request(encode_write_request(samples)) == DecodedWrite(samples, [])


def test_unknown_fields_are_skipped_and_staleness_markers_dropped() -> None:
    label = field(1, field(1, b"__name__") + field(2, b"up"))
    stale = struct.pack("<Q", 0x7FF0000000000002)
    sample = field(2, bytes([0x09]) + stale + bytes([0x10, 0x01]))
    good = field(2, bytes([0x09]) + struct.pack("<d", 3.0) + bytes([0x10, 0x02]))
    # Field 3 (exemplars) and a fixed32 field 9 in the TimeSeries, field 3 (metadata) in the WriteRequest.
    series = label + sample + good + field(3, b"\x00") + bytes([9 << 3 | 5]) + b"\x00\x00\x00\x00"
    body = field(1, series) + field(3, b"\x08\x01")
    decoded = decode_write_request(bytes(cramjam.snappy.compress_raw(body))).samples
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
def test_undecodable_bodies_raise_one_specific_error(body: bytes) -> None:
    with pytest.raises(RemoteWriteDecodeError):
        decode_write_request(body)


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
def test_each_malformed_shape_fails_with_a_decode_error(payload: bytes, error: str) -> None:
    # protobuf says only "corrupt" whatever the shape; ``error`` names it for the reader of a failing test.
    with pytest.raises(RemoteWriteDecodeError, match=r"corrupt|UTF-8"):
        decode_write_request(bytes(cramjam.snappy.compress_raw(payload)))


def test_a_label_name_of_the_wrong_wire_type_is_an_unknown_field() -> None:
    # A label whose name is sent as a varint: to protobuf an unknown field, so the label has no name, the series none.
    body = bytes(cramjam.snappy.compress_raw(b"\x0a\x06\x0a\x02\x08\x01\x12\x00"))
    assert [problem.kind for problem in decode_write_request(body).refused] == ["metric_name"]


def _label(name: bytes, value: bytes) -> bytes:
    return field(1, field(1, name) + field(2, value))


def _sample(value: float) -> bytes:
    return field(2, bytes([0x09]) + struct.pack("<d", value) + bytes([0x10, 0x02]))


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
    labels: bytes, kind: str, label: str
) -> None:
    good = field(1, _label(b"__name__", b"up") + _sample(1.0))
    body = good + field(1, labels + _sample(2.0)) + good
    decoded = decode_write_request(bytes(cramjam.snappy.compress_raw(body)))
    assert decoded.samples == [MetricSample(SeriesKey.of("up"), 0.002, 1.0)] * 2
    assert [(problem.kind, problem.label) for problem in decoded.refused] == [(kind, label)]


def test_label_bounds_are_the_ones_given() -> None:
    series = SeriesKey.of("up", {"job": "j" * 20})
    body = encode_write_request([MetricSample(series, 1.0, 1.0)])
    assert decode_write_request(body).refused == []
    refused = decode_write_request(body, labels=LabelLimits(max_value_length=10)).refused
    assert [problem.kind for problem in refused] == ["value_too_long"]


def test_a_body_expanding_past_the_bound_is_refused_before_decompressing() -> None:
    body = encode_write_request([MetricSample(SeriesKey.of("up", {"blob": "b" * 5_000}), 1.0, 1.0)])
    assert decode_write_request(body, max_decoded_bytes=6_000).refused[0].kind == "value_too_long"
    with pytest.raises(RemoteWriteTooLargeError):
        decode_write_request(body, max_decoded_bytes=4_000)


def test_samples_are_counted_as_they_are_read() -> None:
    series = SeriesKey.of("up")
    body = encode_write_request([MetricSample(series, float(n), 1.0) for n in range(11)])
    assert len(decode_write_request(body, max_samples=11).samples) == 11
    with pytest.raises(RemoteWriteTooLargeError) as raised:
        decode_write_request(body, max_samples=10)
    assert (raised.value.error, raised.value.limit) == ("too_many_samples", 10)


def test_samples_of_refused_series_count_against_the_bound_too() -> None:
    # Otherwise a body of series that all break the rules would grow the list of refusals without bound.
    bad = field(1, _label(b"job", b"no-name") + _sample(1.0) + _sample(2.0))
    body = bytes(cramjam.snappy.compress_raw(bad * 6))
    assert len(decode_write_request(body, max_samples=12).refused) == 6
    with pytest.raises(RemoteWriteTooLargeError, match="samples"):
        decode_write_request(body, max_samples=11)


def test_series_without_samples_give_nothing_and_past_the_bound_are_refused_unread() -> None:
    empty = field(1, _label(b"job", b"no-name"))
    good = field(1, _label(b"__name__", b"up") + _sample(1.0))
    body = bytes(cramjam.snappy.compress_raw(empty * 9 + good))
    assert decode_write_request(body, max_samples=10) == DecodedWrite([MetricSample(SeriesKey.of("up"), 0.002, 1.0)])
    # Four million empty series in 8 MB: refused for their number, before the first is looked at.
    body = bytes(cramjam.snappy.compress_raw(b"\x0a\x00" * 4_000_000))
    with pytest.raises(RemoteWriteTooLargeError, match="series"):
        decode_write_request(body)


def test_a_series_with_a_million_labels_is_refused_without_reading_them() -> None:
    labels = _label(b"__name__", b"up") + _label(b"a", b"b") * 100_000
    series = bytes([1 << 3 | 2]) + varint(len(labels) + 13) + labels + _sample(1.0)
    decoded = decode_write_request(bytes(cramjam.snappy.compress_raw(series)))
    assert [(problem.kind, problem.label) for problem in decoded.refused] == [("too_many_labels", None)]


def test_series_past_the_size_bound_are_refused_unparsed_and_the_others_kept() -> None:
    # Each 2-byte empty label would be tens of bytes once parsed: such series are left out on their size alone.
    labels = _label(b"__name__", b"up") + b"\x0a\x00" * (MAX_SERIES_BYTES // 2)
    huge = bytes([1 << 3 | 2]) + varint(len(labels) + 13) + labels + _sample(1.0)
    small = _label(b"__name__", b"ok") + _sample(2.0)
    raw = huge * 3 + bytes([1 << 3 | 2]) + varint(len(small)) + small
    decoded = decode_write_request(bytes(cramjam.snappy.compress_raw(raw)))
    assert [(problem.kind, problem.label) for problem in decoded.refused] == [("series_too_large", None)] * 3
    assert [(sample.series.name, sample.value) for sample in decoded.samples] == [("ok", 2.0)]


# Remote-Write 2.0


def _v2(symbols: list[str], *series: tuple[list[int], list[tuple[float, int]]], extra: bytes = b"") -> bytes:
    """A compressed 2.0 Request: each series its label references and (value, timestamp in ms) samples; ``extra``
    appended to each series' bytes (fields the engine does not read)."""
    request = RequestV2(symbols=symbols)
    raw = request.SerializeToString()
    for refs, points in series:
        samples = [SampleV2(value=value, timestamp=timestamp) for value, timestamp in points]
        one = TimeSeriesV2(labels_refs=refs, samples=samples).SerializeToString() + extra
        raw += bytes([5 << 3 | 2]) + varint(len(one)) + one
    return bytes(cramjam.snappy.compress_raw(raw))


SYMBOLS = ["", "__name__", "up", "job", "node", "instance", "a:9100"]


def test_v2_labels_are_read_from_the_symbols_table() -> None:
    body = _v2(SYMBOLS, ([1, 2, 5, 6, 3, 4], [(1.0, 1_700_000_000_123), (2.0, 1_700_000_001_000)]), ([1, 2], [(-3, 5)]))
    up, plain = MetricSample(UP, 1_700_000_000.123, 1.0), MetricSample(SeriesKey.of("up"), 0.005, -3.0)
    assert decode_request_v2(body) == DecodedWrite([up, MetricSample(UP, 1_700_000_001.0, 2.0), plain])


def test_v2_histograms_exemplars_metadata_and_staleness_markers_are_not_taken() -> None:
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    # histograms (3), exemplars (4), metadata (5) and created_timestamp (6), as the engine does not read them.
    extra = field(3, b"\x08\x01") + field(4, b"\x0a\x02\x01\x02") + field(5, b"\x08\x02") + b"\x30\x07"
    body = _v2(SYMBOLS, ([1, 2], [(stale, 1), (4.0, 2)]), ([1, 2], []), extra=extra)
    assert decode_request_v2(body) == DecodedWrite([MetricSample(SeriesKey.of("up"), 0.002, 4.0)])


@pytest.mark.parametrize(
    ("refs", "kind", "label"),
    [
        ([3, 4], "metric_name", "__name__"),
        ([1, 2, 3, 4, 3, 6], "duplicate_label", "job"),
        ([1, 2, 0, 4], "label_name", ""),
        ([1, 2, 7, 4], "reserved_label", "__address__"),
        ([1, 2, 3, 8], "label_value", "job"),
        ([1, 2] + [3, 4] * 100, "too_many_labels", None),
    ],
)
def test_v2_series_breaking_the_label_rules_are_left_out_and_the_others_kept(
    refs: list[int], kind: str, label: str | None
) -> None:
    symbols = [*SYMBOLS, "__address__", "a\x00b"]
    body = _v2(symbols, ([1, 2], [(1.0, 2)]), (refs, [(2.0, 2)]), ([1, 2], [(1.0, 2)]))
    decoded = decode_request_v2(body)
    assert decoded.samples == [MetricSample(SeriesKey.of("up"), 0.002, 1.0)] * 2
    assert [(problem.kind, problem.label) for problem in decoded.refused] == [(kind, label)]


@pytest.mark.parametrize(
    ("symbols", "refs", "error"),
    [
        (SYMBOLS, [1, 7], "label reference 7 past the symbols table"),
        (SYMBOLS, [1, 2**32 - 1], "past the symbols table"),
        ([], [0, 0], "past the symbols table"),
        (SYMBOLS, [1, 2, 3], "odd number"),
        (["__name__", "up"], [0, 1], "start with the empty string"),
    ],
)
def test_v2_bad_symbol_references_make_the_body_undecodable(symbols: list[str], refs: list[int], error: str) -> None:
    with pytest.raises(RemoteWriteDecodeError, match=error):
        decode_request_v2(_v2(symbols, ([1, 2], [(1.0, 1)]) if len(symbols) > 2 else ([], []), (refs, [(1.0, 1)])))


def test_v2_every_truncation_of_a_body_is_a_decode_error_or_a_request_read_whole() -> None:
    raw = cramjam.snappy.decompress_raw(_v2(SYMBOLS, ([1, 2, 5, 6, 3, 4], [(1.0, 1), (2.0, 2)]), ([1, 2], [(3.0, 3)])))
    for end in range(len(raw)):
        try:
            decoded = decode_request_v2(bytes(cramjam.snappy.compress_raw(bytes(raw)[:end])))
        except RemoteWriteDecodeError:
            continue
        # A cut between two fields leaves a shorter valid request: never more than the whole one.
        assert len(decoded.samples) <= 3


def test_v2_bounds_hold_before_the_work() -> None:
    # A body past the 2.0 bound (of short strings, parsed whole) is refused before it is parsed; within it, a
    # table of hundreds of thousands of symbols is not turned into Python strings.
    too_large = _v2(["", *(f"{n}" for n in range(V2_MAX_DECODED_BYTES // 2))], ([1, 2], [(1.0, 1)]))
    with pytest.raises(RemoteWriteTooLargeError) as refused:
        decode_request_v2(too_large)
    assert (refused.value.error, refused.value.limit) == ("body_too_large", V2_MAX_DECODED_BYTES)
    started = time.perf_counter()
    body = _v2(["", "__name__", "up", *(f"{n}" for n in range(200_000))], ([1, 2], [(1.0, 1)]))
    built = time.perf_counter() - started
    started = time.perf_counter()
    assert len(decode_request_v2(body).samples) == 1
    assert time.perf_counter() - started < max(built / 4, 0.2)
    many = _v2(SYMBOLS, *[([1, 2], [(1.0, n)]) for n in range(11)])
    assert len(decode_request_v2(many, max_samples=11).samples) == 11
    with pytest.raises(RemoteWriteTooLargeError) as raised:
        decode_request_v2(many, max_samples=10)
    assert (raised.value.error, raised.value.limit) == ("too_many_samples", 10)
    huge = _v2(SYMBOLS, ([1, 2], [(1.0, 1)]))
    with pytest.raises(RemoteWriteTooLargeError):
        decode_request_v2(huge, max_decoded_bytes=10)


def test_a_1_0_body_read_as_2_0_is_an_empty_request() -> None:
    # Upstream reserves 2.0's fields 1 to 3 for this; the receiver still picks by Content-Type.
    assert decode_request_v2(encode_write_request([MetricSample(UP, 1.0, 1.0)])) == DecodedWrite()
