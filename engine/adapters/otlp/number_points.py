"""The number data points (gauges and sums) of an OTLP request, read from the request's own serialization.

Flattening is on the path of every point. upb parses a request (and refuses what is malformed) at about 3 million
points/s; reading its points back as Python objects, one wrapper per point and per attribute, gave 55,000 points/s
on collector-shaped requests (``python -m benchmarks.formats``, 2-core machine). So the request's bytes are walked
once, after upb has parsed them (the parse refuses what is malformed), as long as they are laid out as upb writes
them (each field the walk reads once, a oneof once, tags in their fewest bytes: what producers, the collector
included, send); bytes laid out otherwise are serialized again by upb from the parse, and that is walked.
``walk_request`` finds every metric and, for gauges and sums, where each data point's fields lie; the fixed-size
fields of all the request's points (start time, time, value) are then gathered by numpy in one go
(``number_columns``), and a point's attribute set is known by its bytes (the key its series is cached by). Only the
step from one point to the next is Python's. A metric whose points have another layout (an exemplar, no value) is read
one field at a time (``number_points``). Histograms and summaries, fewer and costlier anyway, are read as objects
(the walk gives their places).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from engine.domain.batches import FloatArray

# What a number metric's points become (see engine.adapters.otlp.metrics).
GAUGE, DELTA, COUNTER = 0, 1, 2
_DELTA_TEMPORALITY, _CUMULATIVE_TEMPORALITY = 1, 2

# Tags (field number << 3 | wire type) of the fields the walk reads.
_RESOURCE_METRICS = 0x0A  # ExportMetricsServiceRequest.resource_metrics
_RESOURCE, _SCOPE_METRICS = 0x0A, 0x12  # ResourceMetrics
_METRICS = 0x12  # ScopeMetrics
_NAME, _GAUGE, _SUM = 0x0A, 0x2A, 0x3A  # Metric
_DISTRIBUTIONS = frozenset((0x4A, 0x52, 0x5A))  # Metric: histogram, exponential_histogram, summary
_DATA = _DISTRIBUTIONS | {_GAUGE, _SUM}  # Metric's data oneof
_DATA_POINTS, _TEMPORALITY, _MONOTONIC = 0x0A, 0x10, 0x18  # Gauge and Sum
# NumberDataPoint's fields.
_START, _TIME, _AS_DOUBLE, _EXEMPLAR, _AS_INT, _ATTRIBUTE, _FLAGS = 0x11, 0x19, 0x21, 0x2A, 0x31, 0x3A, 0x40

_FIXED64 = struct.Struct("<Q").unpack_from
_SFIXED64 = struct.Struct("<q").unpack_from
_DOUBLE = struct.Struct("<d").unpack_from
_BYTES_8 = np.arange(1, 9)


class WireError(ValueError):
    """A serialization that does not hold what the walk expects (only a malformed message can give one)."""


class NotCanonicalError(Exception):
    """Bytes laid out otherwise than upb writes them (a field the walk reads repeated or split, a tag written in more
    bytes than it needs): read them through a parse and upb's serialization instead."""


class NumberMetric(NamedTuple):
    """A gauge or sum: its resource (an index into ``RequestWalk.resources``), name, what its points become
    (``GAUGE``, ``DELTA`` or ``COUNTER``), its points (``first`` to ``stop`` in the walk's point lists) and the
    bytes of its Gauge or Sum message (``data``, for the field-by-field reader)."""

    resource: int
    name: str
    kind: int
    first: int
    stop: int
    data: tuple[int, int]


@dataclass
class RequestWalk:
    """Where things are in a serialized request: each ResourceMetrics' Resource message, the number metrics, the
    places of the other metrics (resource, scope and metric indexes) and each number point's fields."""

    resources: list[bytes] = field(default_factory=list)
    numbers: list[NumberMetric] = field(default_factory=list)
    others: list[tuple[int, int, int]] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)


def walk_request(buffer: bytes) -> RequestWalk:
    """The places in ``buffer``, an ``ExportMetricsServiceRequest`` laid out as upb serializes it (as producers
    write it); NotCanonicalError where its layout would make the walk read otherwise than a parse (upb's serialization
    of the parsed request is then walked instead)."""
    walk = RequestWalk()
    try:
        for tag, start, stop in _fields(buffer, 0, len(buffer)):
            if tag == _RESOURCE_METRICS:
                _walk_resource_metrics(buffer, start, stop, walk)
    except IndexError as exc:
        raise WireError("a field runs past the end of its message") from exc
    return walk


def _walk_resource_metrics(buffer: bytes, index: int, stop: int, walk: RequestWalk) -> None:
    resource_index = len(walk.resources)
    resource = b""
    scope_index = 0
    resources = 0
    for tag, start, end in _fields(buffer, index, stop):
        if tag == _RESOURCE:
            # A second Resource would be merged into the first by a parse.
            resources += 1
            if resources > 1:
                raise NotCanonicalError("a resource given twice")
            resource = buffer[start:end]
        elif tag == _SCOPE_METRICS:
            metric_index = 0
            for inner, metric_start, metric_end in _fields(buffer, start, end):
                if inner == _METRICS:
                    _walk_metric(buffer, metric_start, metric_end, walk, (resource_index, scope_index, metric_index))
                    metric_index += 1
            scope_index += 1
    walk.resources.append(resource)


def _walk_metric(buffer: bytes, index: int, stop: int, walk: RequestWalk, place: tuple[int, int, int]) -> None:
    # Walked inline, not through ``_fields``: a request holds many metrics of few points each.
    name = ""
    data: tuple[int, int, int, int, int] | None = None
    # A parse merges a Gauge or Sum given twice, and keeps only the last of the data oneof's fields.
    data_fields = 0
    while index < stop:
        # Every tag the walk looks for is one byte, as are most sizes: read inline (a call each was a third of it).
        tag = buffer[index]
        if tag >= 0x80 or tag & 7 != 2:
            tag, index = _tag(buffer, index)
            index = _skip(buffer, index, tag)
            continue
        size = buffer[index + 1]
        if size < 0x80:
            index += 2
        else:
            size, index = _varint(buffer, index + 1)
        end = index + size
        if tag == _NAME:
            name = buffer[index:end].decode()
        elif tag in _DATA:
            data_fields += 1
            if data_fields > 1:
                raise NotCanonicalError("a metric with its data given twice")
            if tag in _DISTRIBUTIONS:
                walk.others.append(place)
            else:
                first = len(walk.starts)
                temporality, monotonic = _walk_points(buffer, index, end, walk.starts, walk.ends)
                data = (tag, index, end, temporality, monotonic)
        index = end
    if index != stop:
        raise IndexError("a field runs past its metric")
    if data is not None:
        tag, start, end, temporality, monotonic = data
        kind = GAUGE
        if tag == _SUM and temporality == _DELTA_TEMPORALITY:
            kind = DELTA
        elif tag == _SUM and temporality == _CUMULATIVE_TEMPORALITY and monotonic:
            kind = COUNTER
        walk.numbers.append(NumberMetric(place[0], name, kind, first, len(walk.starts), (start, end)))


def _walk_points(buffer: bytes, index: int, stop: int, starts: list[int], ends: list[int]) -> tuple[int, int]:
    """Record where each data point of a Gauge or Sum lies; the Sum's temporality and monotonic flag."""
    temporality = monotonic = 0
    add_start, add_end = starts.append, ends.append
    while index < stop:
        if buffer[index] == _DATA_POINTS:
            # Lengths below 128 (most points) are one byte: read inline, as a call per point costs a fifth of it.
            length = buffer[index + 1]
            if length < 0x80:
                index += 2
            else:
                length, index = _varint(buffer, index + 1)
            add_start(index)
            index += length
            add_end(index)
            continue
        tag, index = _tag(buffer, index)
        if tag == _TEMPORALITY:
            temporality, index = _varint(buffer, index)
        elif tag == _MONOTONIC:
            monotonic, index = _varint(buffer, index)
        else:
            index = _skip(buffer, index, tag)
    if index != stop:
        raise IndexError("a data point runs past its metric")
    return temporality, monotonic


@dataclass
class NumberColumns:
    """The number points of a walk: ``regular[i]`` if point i has upb's usual layout (an optional start time, a
    time and a value, then no exemplar), and for those its start time, time (ns), value, where its key starts (its
    bytes past the fixed fields: attributes, and flags if any), where its time field lies and whether it has a start
    time. What the other points hold is undefined."""

    regular: np.ndarray
    start_times: np.ndarray
    times: np.ndarray
    values: FloatArray
    key_starts: np.ndarray
    time_tags: np.ndarray
    has_start: np.ndarray

    def keys(self, buffer: bytes, ends: list[int]) -> list[bytes]:
        """Each point's key, the bytes its series is known by."""
        return [buffer[key:stop] for key, stop in zip(self.key_starts.tolist(), ends, strict=True)]

    def payloads(self) -> np.ndarray:
        """Where the payloads of the regular points' fixed fields start (eight bytes each): start time (where
        given, just before the time field), time and value."""
        regular = self.regular
        time_tags = self.time_tags[regular]
        return np.concatenate((self.time_tags[self.has_start & regular] - 8, time_tags + 1, time_tags + 10))


def number_columns(buffer: bytes, starts: list[int] | np.ndarray, ends: list[int] | np.ndarray) -> NumberColumns:
    """The fixed fields of the points at ``starts``/``ends`` in ``buffer``, gathered for all at once."""
    data = np.frombuffer(buffer, dtype=np.uint8)
    last = len(data) - 1
    first_byte = np.asarray(starts, dtype=np.int64)
    end = np.asarray(ends, dtype=np.int64)
    room = end - first_byte
    has_start = (room >= 27) & (data[np.minimum(first_byte, last)] == _START)
    time_at = first_byte + 9 * has_start
    value_at = time_at + 9
    key_at = time_at + 18
    value_tag = data[np.minimum(value_at, last)]
    is_double = value_tag == _AS_DOUBLE
    regular = (
        (key_at <= end)
        & (data[np.minimum(time_at, last)] == _TIME)
        & (is_double | (value_tag == _AS_INT))
        & ~((key_at < end) & (data[np.minimum(key_at, last)] == _EXEMPLAR))
    )
    # Irregular points are gathered from the buffer's start (always 8 bytes or more there) and ignored.
    time_at = np.where(regular, time_at, 0)
    times = data[time_at[:, None] + _BYTES_8].view("<i8").ravel()
    start_at = np.where(has_start & regular, first_byte, 0)
    start_times = np.where(has_start & regular, data[start_at[:, None] + _BYTES_8].view("<i8").ravel(), 0)
    raw_values = data[(time_at + 9 * regular)[:, None] + _BYTES_8]
    values = np.where(is_double, raw_values.view("<f8").ravel(), raw_values.view("<i8").ravel().astype(np.float64))
    return NumberColumns(regular, start_times, times, values, key_at, time_at, has_start)


def number_points(buffer: bytes) -> list[tuple[bytes, int, int, float, int]]:
    """The data points (field 1) of a serialized Gauge or Sum, one field at a time (any layout): each one's
    attributes (their serialized fields, the key of its attribute set), start time, time, value and flags."""
    points: list[tuple[bytes, int, int, float, int]] = []
    index, end = 0, len(buffer)
    while index < end:
        tag = buffer[index]
        if tag != _DATA_POINTS:
            tag, index = _tag(buffer, index)
            index = _skip(buffer, index, tag)
            continue
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
                tag, index = _tag(buffer, index)
                index = _skip(buffer, index, tag)
        if index != stop:
            raise WireError("a data point runs past its length")
        points.append((buffer[first:last], start, time, value, flag))
    return points


def _fields(buffer: bytes, index: int, stop: int) -> list[tuple[int, int, int]]:
    """Each field of the message at ``buffer[index:stop]``: its tag and where its value lies (a length-delimited
    field's contents; the varint or fixed bytes of the others)."""
    found = []
    while index < stop:
        tag, index = _tag(buffer, index)
        if tag & 7 == 2:
            size, index = _varint(buffer, index)
            found.append((tag, index, index + size))
            index += size
        else:
            after = _skip(buffer, index, tag)
            found.append((tag, index, after))
            index = after
    if index != stop:
        raise IndexError("a field runs past its message")
    return found


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


def _tag(buffer: bytes, index: int) -> tuple[int, int]:
    """A field's tag, as ``_varint``; NotCanonicalError if it is written in more bytes than it needs (a reader that
    compares tag bytes would not see it)."""
    tag, after = _varint(buffer, index)
    if after - index > 1 and buffer[after - 1] == 0:
        raise NotCanonicalError("a tag in more bytes than it needs")
    return tag, after


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
    raise WireError(f"wire type {wire}")
