"""Decodes Prometheus remote_write bodies: snappy block compression around a protobuf message, Remote-Write 1.0's
``prometheus.WriteRequest`` or 2.0's ``io.prometheus.write.v2.Request`` (strings interned in a symbols table).

The protobuf library parses the message (types in ``remote_write_types``), and this module turns its series into
samples. The engine read 1.0 bodies with a hand-written wire reader before; on the same bodies the library reader
takes 1.3 to 2.2 times the samples a second (``python -m benchmarks.remote_write``, medians of interleaved rounds,
three runs on a busy two-core machine, 2026-12, 3,000 to 100,000 samples a request), so the hand-written one is gone.
A malformed body fails with ``RemoteWriteDecodeError`` carrying protobuf's reason; a field of an unexpected wire
type is, by protobuf's rules, an unknown field and skipped, like metadata, exemplars and native histograms.

A body is bounded: the length the snappy header announces is checked before anything is decompressed, and the
series and samples it carries are counted before any becomes an object (``RemoteWriteTooLargeError``: each sample
becomes an object of about a hundred bytes, several times its size on the wire); every series' name and labels are
checked against the engine's label rules. A series that breaks them is left out and reported (``DecodedWrite.
refused``) while the others go on, so that one bad exporter does not blind the engine to every series sent with it.

The library builds every submessage of what it parses before anything can be counted, tens of bytes of memory for
a two-byte empty series or label: a 32 MiB body of empty series took 600 MB parsed whole. So the top level of the
1.0 message is walked first (tags and lengths only, a few microseconds a series): more series than the sample bound
are refused and a series larger than ``MAX_SERIES_BYTES`` left out before any parsing, and the series are parsed a
slice of at most ``PARSE_SLICE_BYTES`` at a time, each slice's objects gone before the next. A 2.0 body, whose strings
are sent once, is bounded to ``V2_MAX_DECODED_BYTES`` instead and parsed whole.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import cramjam
from google.protobuf.message import DecodeError

from engine.adapters.prometheus.remote_write_types import Label, RequestV2, Sample, TimeSeries, WriteRequest
from engine.domain.events import MetricSample, SeriesKey, freeze_labels
from engine.domain.limits import LabelLimits, LabelProblem, label_problem, metric_name_problem

DEFAULT_MAX_DECODED_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 100_000
# One series on the wire: 50,000 samples (Prometheus sends 2,000 a request by default) take about 1 MB. A series of
# that size made of empty labels costs about 60 MB parsed.
MAX_SERIES_BYTES = 1024 * 1024
# The most a 2.0 body may expand to (at most the general bound): parsed whole, each two-byte empty symbol or series
# costs about 35 bytes.
V2_MAX_DECODED_BYTES = 2 * 1024 * 1024
# Series are parsed this many bytes of the body at a time (a larger series alone).
PARSE_SLICE_BYTES = 256 * 1024


class RemoteWriteDecodeError(ValueError):
    """The body is not a snappy-compressed protobuf message of the remote_write version it was sent as."""


class RemoteWriteTooLargeError(RemoteWriteDecodeError):
    """The body would decompress to more bytes, or carries more samples, than its bounds; ``error`` says which
    (``body_too_large``, ``too_many_samples``), ``limit`` is that bound."""

    def __init__(self, error: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.error = error
        self.limit = limit


@dataclass(frozen=True)
class DecodedWrite:
    """The samples of a request, and why each series left out was refused."""

    samples: list[MetricSample] = field(default_factory=list)
    refused: list[LabelProblem] = field(default_factory=list)


def decode_write_request(
    body: bytes,
    *,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    labels: LabelLimits | None = None,
) -> DecodedWrite:
    """The samples of a snappy-compressed 1.0 WriteRequest, series by series in the order they were sent, and the
    problems of the series left out; RemoteWriteTooLargeError if the body expands past ``max_decoded_bytes`` or
    carries more than ``max_samples`` samples."""
    raw = _decompress(body, max_decoded_bytes)
    fields = _top_level(raw, _V1_SERIES, max_samples, _V1_SERIES)
    reader = _Reader(_series(WriteRequest, raw, fields.spans[_V1_SERIES]), max_samples, labels or LabelLimits())
    reader.refuse_oversized(fields.oversized)
    for series in reader.series_with_samples():
        if reader.too_many_labels(len(series.labels)):
            continue
        names: dict[str, str] = {}
        duplicate = ""
        for label in series.labels:
            name = label.name
            if name in names:
                duplicate = name
            names[name] = label.value
        reader.take(series.samples, names, duplicate)
    return reader.decoded


def decode_request_v2(
    body: bytes,
    *,
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    labels: LabelLimits | None = None,
) -> DecodedWrite:
    """decode_write_request for a Remote-Write 2.0 Request: labels are pairs of references into the symbols table,
    which must start with the empty string; a reference past the table, or an odd number of them, makes the whole
    body undecodable. Histograms, exemplars, metadata and created timestamps are not read."""
    # 2.0 bodies are small (strings are sent once), and parsed whole: within this bound even a body of nothing but
    # empty symbols or series stays under a hundred MB parsed, so no walk of millions of top-level fields is needed.
    request = _parse(RequestV2, _decompress(body, min(max_decoded_bytes, V2_MAX_DECODED_BYTES)))
    if len(request.timeseries) > max_samples:
        raise RemoteWriteTooLargeError("too_many_samples", max_samples, f"more than {max_samples} series")
    symbols = request.symbols
    count = len(symbols)
    if count and symbols[0] != "":
        raise RemoteWriteDecodeError("the symbols table does not start with the empty string")
    # Only the symbols referenced become Python strings, once each: a table of millions of short strings costs
    # nothing until a series names them, and series that share a label share its strings.
    text: dict[int, str] = {}
    reader = _Reader(iter(request.timeseries), max_samples, labels or LabelLimits())
    for series in reader.series_with_samples():
        refs = series.labels_refs
        if len(refs) % 2:
            raise RemoteWriteDecodeError(f"an odd number ({len(refs)}) of label references")
        if reader.too_many_labels(len(refs) // 2):
            continue
        names: dict[str, str] = {}
        duplicate = ""
        pairs = iter(refs)
        for name_ref, value_ref in zip(pairs, pairs, strict=True):
            for ref in (name_ref, value_ref):
                if ref not in text:
                    if ref >= count:
                        raise RemoteWriteDecodeError(f"label reference {ref} past the symbols table ({count} symbols)")
                    text[ref] = symbols[ref]
            name = text[name_ref]
            if name in names:
                duplicate = name
            names[name] = text[value_ref]
        reader.take(series.samples, names, duplicate)
    return reader.decoded


def _decompress(body: bytes, max_decoded_bytes: int) -> bytes:
    """The snappy block ``body`` decompressed, its announced length checked against the bound first."""
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except cramjam.DecompressionError as exc:
        raise RemoteWriteDecodeError(f"not snappy block data: {exc}") from exc
    if size > max_decoded_bytes:
        raise RemoteWriteTooLargeError(
            "body_too_large", max_decoded_bytes, f"body expands to {size} bytes, more than {max_decoded_bytes}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise RemoteWriteDecodeError(f"not snappy block data: {exc}") from exc


# The field number of 1.0's WriteRequest.timeseries.
_V1_SERIES = 1
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class _TopLevel:
    """Where each wanted field lies in the top level of a message (start of its tag, end of its value), and how many
    series were left out for their size."""

    def __init__(self, wanted: tuple[int, ...]) -> None:
        self.spans: dict[int, list[tuple[int, int]]] = {number: [] for number in wanted}
        self.oversized = 0


def _top_level(raw: bytes, series_field: int, max_series: int, *wanted: int) -> _TopLevel:
    """The fields of ``wanted`` in the top level of the message ``raw``, the others skipped; a series larger than
    ``MAX_SERIES_BYTES`` is counted, not kept. RemoteWriteTooLargeError past ``max_series`` series (a series without
    samples gives nothing, so more series than the sample bound cannot all be worth reading), RemoteWriteDecodeError
    where the wire format is broken."""
    found_fields = _TopLevel(wanted)
    spans = found_fields.spans
    series_seen = 0
    position, end = 0, len(raw)
    while position < end:
        start = position
        tag, position = _varint(raw, position)
        number, wire = tag >> 3, tag & 7
        if wire == _LEN:
            length, position = _varint(raw, position)
            stop = position + length
        elif wire == _VARINT:
            _, stop = _varint(raw, position)
        elif wire == _I64:
            stop = position + 8
        elif wire == _I32:
            stop = position + 4
        else:
            raise RemoteWriteDecodeError(f"corrupt wire format: wire type {wire} at byte {start}")
        if number == 0:
            raise RemoteWriteDecodeError(f"corrupt wire format: field number 0 at byte {start}")
        if stop > end:
            raise RemoteWriteDecodeError(f"corrupt wire format: field at byte {start} runs past the end")
        found = spans.get(number)
        if found is not None and wire == _LEN:
            if number != series_field:
                found.append((start, stop))
            else:
                series_seen += 1
                if series_seen > max_series:
                    raise RemoteWriteTooLargeError("too_many_samples", max_series, f"more than {max_series} series")
                if stop - position > MAX_SERIES_BYTES:
                    found_fields.oversized += 1
                else:
                    found.append((start, stop))
        position = stop
    return found_fields


def _varint(raw: bytes, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if position >= len(raw) or shift > 63:
            raise RemoteWriteDecodeError("corrupt wire format: truncated or overlong varint")
        byte = raw[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _series(message: Any, raw: bytes, spans: list[tuple[int, int]]) -> Iterator[Any]:
    """The series at ``spans``, parsed a slice of the body at a time: only one slice's objects live at once."""
    view = memoryview(raw)
    first = 0
    while first < len(spans):
        last, size = first, 0
        while last < len(spans) and (last == first or size + spans[last][1] - spans[last][0] <= PARSE_SLICE_BYTES):
            size += spans[last][1] - spans[last][0]
            last += 1
        # Top-level fields of one message may be concatenated: a slice of them is a message of its own.
        yield from _parse(message, b"".join(view[start:end] for start, end in spans[first:last])).timeseries
        first = last


def _parse(message: Any, raw: bytes) -> Any:
    try:
        return message.FromString(raw)
    except DecodeError as exc:
        raise RemoteWriteDecodeError(f"not a {message.DESCRIPTOR.full_name}: {exc}") from exc


class _Reader:
    """What the series of one request give: their samples within the bound, and the problems of those refused."""

    def __init__(self, series: Any, max_samples: int, limits: LabelLimits) -> None:
        self._series = series
        self._max_samples = max_samples
        self._limits = limits
        self._read = 0
        self.decoded = DecodedWrite()

    def _too_many(self, what: str) -> RemoteWriteTooLargeError:
        return RemoteWriteTooLargeError("too_many_samples", self._max_samples, f"more than {self._max_samples} {what}")

    def series_with_samples(self) -> Iterator[Any]:
        """The series that carry samples, counted before their labels are read. Every sample counts, those of
        refused series and staleness markers too, so that neither the work nor the list of refusals can grow past
        the bound; and since a series without samples gives nothing, more series than the sample bound are refused
        before any is read (an 8 MiB body of empty series is millions of them)."""
        for series in self._series:
            points = len(series.samples)
            if not points:
                continue
            self._read += points
            if self._read > self._max_samples:
                raise self._too_many("samples")
            yield series

    def refuse_oversized(self, count: int) -> None:
        """Report ``count`` series left out unread for their size."""
        message = f"a series of more than {MAX_SERIES_BYTES} bytes"
        self.decoded.refused.extend(LabelProblem("series_too_large", None, message) for _ in range(count))

    def too_many_labels(self, count: int) -> bool:
        """Whether a series of ``count`` labels (``__name__`` among them) is refused before they are read: one
        sender's series of a million labels is not worth reading to find out what else is wrong with it."""
        if count <= self._limits.max_labels + 1:
            return False
        message = f"{count - 1} labels, more than {self._limits.max_labels}"
        self.decoded.refused.append(LabelProblem("too_many_labels", None, message))
        return True

    def take(self, points: Any, labels: dict[str, str], duplicate: str) -> None:
        """The samples of one series with these labels (``__name__`` among them), or its refusal."""
        metric = labels.pop("__name__", "")
        limits = self._limits
        problem = (
            LabelProblem("duplicate_label", duplicate, f"label {duplicate!r} given twice")
            if duplicate
            else metric_name_problem(metric, limits) or label_problem(labels.items(), limits, count=len(labels))
        )
        if problem is not None:
            self.decoded.refused.append(problem)
            return
        key = SeriesKey(metric, freeze_labels(labels))
        isnan, out = math.isnan, self.decoded.samples
        for point in points:
            value = point.value
            # Prometheus marks a series that disappeared with a special NaN (staleness marker): not an observation.
            if not isnan(value):
                out.append(MetricSample(key, point.timestamp / 1000.0, value))


def encode_write_request(samples: list[MetricSample]) -> bytes:
    """The inverse, for tests and benchmarks: one TimeSeries per sample, snappy-compressed."""
    request = WriteRequest()
    for sample in samples:
        pairs = (("__name__", sample.series.name), *sample.series.labels)
        labels = [Label(name=name, value=value) for name, value in pairs]
        point = Sample(value=sample.value, timestamp=int(sample.timestamp * 1000))
        request.timeseries.append(TimeSeries(labels=labels, samples=[point]))
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
