"""The Kafka sample message schema: the three shapes decode, and every kind of fault is rejected with a reason."""

from __future__ import annotations

import orjson
import pytest

from engine.adapters.kafka.schema import (
    MAX_SAMPLES_PER_MESSAGE,
    TOO_LARGE,
    InvalidMessageError,
    MessageLimits,
    SampleColumns,
    decode_samples,
    encode_samples,
    series_key_bytes,
)
from engine.domain.events import MetricSample, SeriesKey
from engine.domain.limits import LabelLimits

API = SeriesKey.of("latency_seconds", {"service": "api", "region": "eu"})


def _json(document: object) -> bytes:
    return orjson.dumps(document)


def test_one_sample_per_message() -> None:
    message = _json(
        {"name": "latency_seconds", "labels": {"service": "api", "region": "eu"}, "timestamp": 10, "value": 0.5}
    )
    assert decode_samples(message, series_key_bytes(API)) == [MetricSample(API, 10.0, 0.5)]


def test_columnar_batch_round_trips_through_the_encoder() -> None:
    points = [(10.0, 0.5), (20.0, 0.75), (30.0, 1.0)]
    decoded = decode_samples(encode_samples(API, points), series_key_bytes(API))
    assert [(s.series, s.timestamp, s.value) for s in decoded] == [(API, t, v) for t, v in points]


def test_list_of_samples_keeps_message_order() -> None:
    items = [{"name": "up", "timestamp": t, "value": 1} for t in (3, 1, 2)]
    decoded = decode_samples(_json({"samples": items}))
    assert [s.timestamp for s in decoded] == [3.0, 1.0, 2.0]
    assert {s.series for s in decoded} == {SeriesKey.of("up")}


def test_a_message_without_key_is_accepted() -> None:
    assert len(decode_samples(encode_samples(API, [(1.0, 2.0)]), None)) == 1


@pytest.mark.parametrize(
    ("value", "kind", "reason"),
    [
        (b"{not json", "malformed", "not JSON"),
        (None, "malformed", "tombstone"),
        (b"[1, 2]", "schema", "JSON object"),
        (_json({"name": "1bad", "timestamp": 1, "value": 1}), "labels", "metric name"),
        # A name is checked whole: a line feed after it does not pass for the end of the name.
        (_json({"name": "up\n", "timestamp": 1, "value": 1}), "labels", "metric name"),
        (_json({"name": "up", "labels": {"a\n": "x"}, "timestamp": 1, "value": 1}), "labels", "label"),
        (_json({"name": "up", "labels": {"a": 1}, "timestamp": 1, "value": 1}), "schema", "label"),
        (_json({"name": "up", "labels": {"bad-name": "x"}, "timestamp": 1, "value": 1}), "labels", "label"),
        (_json({"name": 5, "timestamp": 1, "value": 1}), "schema", "metric name"),
        (_json({"name": "up", "labels": ["a"], "timestamp": 1, "value": 1}), "schema", "labels"),
        (_json({"name": "up", "timestamp": 1}), "schema", "value must be a number"),
        (_json({"name": "up", "timestamp": "now", "value": 1}), "schema", "timestamp must be a number"),
        (_json({"name": "up", "timestamp": 1, "value": True}), "schema", "value must be a number"),
        (b'{"name": "up", "timestamp": 1, "value": 1e999}', "malformed", "infinity"),
        (_json({"name": "up", "samples": [[1, 2, 3]]}), "schema", "pair"),
        (_json({"name": "up", "samples": {"1": 2}}), "schema", "list"),
        (_json({"samples": []}), "schema", "no samples"),
        (_json({"samples": [1]}), "schema", "object"),
        (_json({"value": 1}), "schema", "'name'"),
        (
            _json({"samples": [{"name": "a", "timestamp": 1, "value": 1}, {"name": "b", "timestamp": 1, "value": 1}]}),
            "schema",
            "one series",
        ),
    ],
)
def test_invalid_messages_are_rejected_with_a_reason(value: bytes | None, kind: str, reason: str) -> None:
    with pytest.raises(InvalidMessageError, match=reason) as raised:
        decode_samples(value)
    assert raised.value.kind == kind


def test_a_key_naming_another_series_is_rejected() -> None:
    with pytest.raises(InvalidMessageError, match="not the series key") as raised:
        decode_samples(encode_samples(API, [(1.0, 2.0)]), b'latency_seconds{service="web"}')
    assert raised.value.kind == "key"


def test_a_key_that_is_not_utf8_is_rejected() -> None:
    with pytest.raises(InvalidMessageError, match="UTF-8"):
        decode_samples(encode_samples(API, [(1.0, 2.0)]), b"\xff\xfe")


def test_oversized_messages_are_rejected() -> None:
    points = [(float(i), 1.0) for i in range(MAX_SAMPLES_PER_MESSAGE + 1)]
    with pytest.raises(InvalidMessageError, match="samples in one message") as raised:
        decode_samples(encode_samples(API, points), limits=MessageLimits(max_message_bytes=64 * 1024 * 1024))
    assert raised.value.kind == "schema"


def test_the_key_is_the_series_text() -> None:
    assert series_key_bytes(API) == b'latency_seconds{region="eu",service="api"}'
    assert SeriesKey.parse(series_key_bytes(API).decode()) == API


def test_the_key_escapes_label_values_as_prometheus_does() -> None:
    odd = SeriesKey.of("latency_seconds", {"path": 'C:\\x "y"', "note": "two\nlines", "set": '{a="1"}'})
    key = series_key_bytes(odd)
    assert key == b'latency_seconds{note="two\\nlines",path="C:\\\\x \\"y\\"",set="{a=\\"1\\"}"}'
    assert SeriesKey.parse(key.decode()) == odd
    assert decode_samples(encode_samples(odd, [(1.0, 2.0)]), key) == [MetricSample(odd, 1.0, 2.0)]
    # The same text left unescaped names no series (or another one): rejected, not taken for this series.
    raw = b'latency_seconds{note="two\nlines",path="C:\\x "y"",set="{a="1"}"}'
    with pytest.raises(InvalidMessageError) as raised:
        decode_samples(encode_samples(odd, [(1.0, 2.0)]), raw)
    assert raised.value.kind == "key"


def test_columns_hold_what_the_messages_carry_in_order() -> None:
    web = SeriesKey.of("latency_seconds", {"service": "web"})
    messages = [
        (encode_samples(API, [(1.0, 0.5), (2.0, 0.25)]), series_key_bytes(API)),
        (encode_samples(web, [(1, 2)]), series_key_bytes(web)),  # integers are numbers too
        (_json({"name": API.name, "labels": API.label_map, "timestamp": 3.0, "value": 0.75}), None),
    ]
    columns = SampleColumns()
    for value, key in messages:
        columns.add(value, key)
    batch = columns.batch()
    assert list(batch) == [sample for value, key in messages for sample in decode_samples(value, key)]
    assert batch.series == (API, web, API)
    assert len(columns) == 4


@pytest.mark.parametrize("bad", [True, None, "1.5", [1.0]])
def test_a_non_number_among_the_points_is_rejected_and_adds_nothing(bad: object) -> None:
    columns = SampleColumns()
    message = _json({"name": "latency_seconds", "labels": {"service": "api"}, "samples": [[1.0, 2.0], [2.0, bad]]})
    with pytest.raises(InvalidMessageError):
        columns.add(message)
    assert len(columns) == 0
    assert len(columns.batch()) == 0


def test_a_label_that_reads_true_does_not_make_numbers_suspect() -> None:
    labeled = SeriesKey.of("up", {"canary": "true"})
    columns = SampleColumns()
    columns.add(encode_samples(labeled, [(1.0, 1.0), (2.0, 0.0)]), series_key_bytes(labeled))
    assert [sample.value for sample in columns.batch()] == [1.0, 0.0]


def _labelled(labels: dict[str, str], name: str = "up") -> bytes:
    return _json({"name": name, "labels": labels, "timestamp": 1, "value": 1})


@pytest.mark.parametrize(
    "value",
    [
        _labelled({"": "x"}),
        _labelled({"__name__": "up"}),
        _labelled({"__meta_pod": "p"}),
        _labelled({"has space": "x"}),
        _labelled({"nul\u0000": "x"}),
        _labelled({"pod": "a\u0000b"}),
        _labelled({"pod": "p" * 1025}),
        _labelled({f"l{n}": "x" for n in range(65)}),
        _labelled({}, name="u" * 1025),
    ],
)
def test_labels_breaking_the_label_rules_are_rejected_as_labels(value: bytes) -> None:
    with pytest.raises(InvalidMessageError) as raised:
        decode_samples(value)
    assert raised.value.kind == "labels"
    assert len(raised.value.reason) < 200


def test_label_bounds_are_the_ones_given() -> None:
    value = _labelled({"pod": "p" * 20})
    assert len(decode_samples(value)) == 1
    with pytest.raises(InvalidMessageError) as raised:
        decode_samples(value, limits=MessageLimits(labels=LabelLimits(max_value_length=10)))
    assert raised.value.kind == "labels"


def test_a_message_past_the_size_bound_is_rejected_before_it_is_parsed() -> None:
    limits = MessageLimits(max_message_bytes=1000)
    value = b"{" + b" " * 990 + b"}"  # not even a valid message: the size is checked first
    with pytest.raises(InvalidMessageError) as raised:
        decode_samples(value, b"k" * 10, limits)
    assert raised.value.kind == TOO_LARGE
    assert decode_samples(encode_samples(API, [(1.0, 2.0)]), series_key_bytes(API), limits)


def test_a_200_mb_label_is_too_large_by_default() -> None:
    value = _labelled({"pod": "p" * 200_000_000})
    with pytest.raises(InvalidMessageError) as raised:
        decode_samples(value)
    assert raised.value.kind == TOO_LARGE


def test_a_huge_wrong_key_makes_a_short_reason() -> None:
    with pytest.raises(InvalidMessageError) as raised:
        decode_samples(encode_samples(API, [(1.0, 2.0)]), b"k" * 100_000)
    assert raised.value.kind == "key"
    assert len(raised.value.reason) < 300


def test_columns_take_the_limits_given() -> None:
    columns = SampleColumns()
    with pytest.raises(InvalidMessageError):
        columns.add(encode_samples(API, [(1.0, 2.0)]), None, MessageLimits(max_message_bytes=10))
    assert len(columns) == 0
