"""remote_write bodies decoded by the protobuf library (the engine's reader) and by the hand-written wire reader it
replaced, in the same run.

    python -m benchmarks.remote_write [--rounds 7] [--json]

Both readers take the same snappy-compressed WriteRequest bodies: 1,000 series of 6 labels with 3 samples each,
10,000 series of 8 labels with 2 samples each (a large Prometheus shard's request), and 20,000 series of 6 labels
with 5 samples each (100,000 samples, the default sample bound). Rounds interleave the readers, each round starting
with the other one, and every figure is the median over the rounds, so that a noisy machine slows both alike.
Printed for each body: samples decoded per second by each reader and ``library_over_hand_written``, the ratio of
the two (above 1: the library is faster). The hand-written reader is kept here, as it was in the engine, only as
this baseline.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import struct
import time
from collections.abc import Callable

import cramjam

from engine.adapters.prometheus.remote_write import (
    DecodedWrite,
    RemoteWriteDecodeError,
    RemoteWriteTooLargeError,
    decode_write_request,
)
from engine.adapters.prometheus.remote_write_types import Label, Sample, TimeSeries, WriteRequest
from engine.domain.events import MetricSample, SeriesKey, freeze_labels
from engine.domain.limits import LabelLimits, LabelProblem, label_problem, metric_name_problem

Decoder = Callable[[bytes], DecodedWrite]
# (name, series, labels a series besides __name__, samples a series)
BODIES = [("1k_series", 1_000, 6, 3), ("10k_series", 10_000, 8, 2), ("100k_samples", 20_000, 6, 5)]


def body(series: int, labels: int, samples: int) -> bytes:
    """A compressed WriteRequest of ``series`` series, label values shaped like a Kubernetes scrape's."""
    request = WriteRequest()
    for index in range(series):
        names = [Label(name="__name__", value=f"http_requests_total_{index % 50}")]
        names += [Label(name=f"label_{n}", value=f"value-{n}-{index}.serving.svc:8080") for n in range(labels)]
        points = [Sample(value=float(index + n), timestamp=1_700_000_000_000 + 15_000 * n) for n in range(samples)]
        request.timeseries.append(TimeSeries(labels=names, samples=points))
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


# The hand-written reader: one bytes object walked by position, a function a message type.

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_DOUBLE = struct.Struct("<d")
# Tags (field number << 3 | wire type) of the fields read.
_TIMESERIES_TAG = 1 << 3 | _LEN
_LABELS_TAG = 1 << 3 | _LEN
_SAMPLES_TAG = 2 << 3 | _LEN
_NAME_TAG = 1 << 3 | _LEN
_VALUE_TAG = 2 << 3 | _LEN
_VALUE_FIXED64_TAG = 1 << 3 | _I64
_TIMESTAMP_TAG = 2 << 3 | _VARINT


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it; a one-byte varint (every tag here, most lengths) first."""
    if pos < end and data[pos] < 0x80:
        return data[pos], pos + 1
    result = shift = 0
    while pos < end:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift >= 64:
            break
    raise RemoteWriteDecodeError("truncated or overlong varint")


def _skip(data: bytes, pos: int, end: int, key: int) -> int:
    """The position after the value of a field (tag ``key``) that is not read."""
    wire = key & 7
    if key >> 3 == 0:
        raise RemoteWriteDecodeError("field number 0")
    if wire == _VARINT:
        return _varint(data, pos, end)[1]
    if wire == _I64:
        if pos + 8 > end:
            raise RemoteWriteDecodeError("truncated fixed64")
        return pos + 8
    if wire == _LEN:
        return _length(data, pos, end)[1]
    if wire == _I32:
        if pos + 4 > end:
            raise RemoteWriteDecodeError("truncated fixed32")
        return pos + 4
    raise RemoteWriteDecodeError(f"unsupported wire type {wire}")


def _length(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """Where a length-delimited value that starts at ``pos`` (its length) begins and ends."""
    size, pos = _varint(data, pos, end)
    stop = pos + size
    if stop > end:
        raise RemoteWriteDecodeError("truncated length-delimited field")
    return pos, stop


def _text(data: bytes, pos: int, end: int) -> tuple[str, int]:
    start, stop = _length(data, pos, end)
    try:
        return data[start:stop].decode(), stop
    except UnicodeDecodeError as exc:
        raise RemoteWriteDecodeError("label is not UTF-8") from exc


def _label(data: bytes, pos: int, end: int) -> tuple[str, str]:
    name = value = ""
    while pos < end:
        key, pos = _varint(data, pos, end)
        if key == _NAME_TAG:
            name, pos = _text(data, pos, end)
        elif key == _VALUE_TAG:
            value, pos = _text(data, pos, end)
        elif key >> 3 in (1, 2):
            raise RemoteWriteDecodeError("expected a string")
        else:
            pos = _skip(data, pos, end, key)
    return name, value


def _sample(data: bytes, pos: int, end: int) -> tuple[float, float]:
    value, timestamp_ms = 0.0, 0
    while pos < end:
        key, pos = _varint(data, pos, end)
        if key == _VALUE_FIXED64_TAG:
            if pos + 8 > end:
                raise RemoteWriteDecodeError("truncated fixed64")
            value = _DOUBLE.unpack_from(data, pos)[0]
            pos += 8
        elif key == _TIMESTAMP_TAG:
            raw, pos = _varint(data, pos, end)
            # int64 on the wire: two's complement in 64 bits.
            timestamp_ms = raw - (1 << 64) if raw >= 1 << 63 else raw
        else:
            pos = _skip(data, pos, end, key)
    return timestamp_ms / 1000.0, value


def _series(data: bytes, pos: int, end: int, limits: LabelLimits, out: DecodedWrite, max_samples: int) -> None:
    labels: dict[str, str] = {}
    duplicate = ""
    points: list[tuple[float, float]] = []
    while pos < end:
        key, pos = _varint(data, pos, end)
        if key in (_LABELS_TAG, _SAMPLES_TAG):
            start, pos = _length(data, pos, end)
            if key == _LABELS_TAG:
                name, value = _label(data, start, pos)
                if name in labels:
                    duplicate = name
                labels[name] = value
            else:
                points.append(_sample(data, start, pos))
                if len(points) + len(out.samples) > max_samples:
                    message = f"more than {max_samples} samples"
                    raise RemoteWriteTooLargeError("too_many_samples", max_samples, message)
        else:
            pos = _skip(data, pos, end, key)
    metric = labels.pop("__name__", "")
    problem = (
        LabelProblem("duplicate_label", duplicate, f"label {duplicate!r} given twice")
        if duplicate
        else metric_name_problem(metric, limits) or label_problem(labels.items(), limits, count=len(labels))
    )
    if problem is not None:
        out.refused.append(problem)
        return
    key_of_series = SeriesKey(metric, freeze_labels(labels))
    # Prometheus marks a series that disappeared with a special NaN (staleness marker): not an observation.
    out.samples.extend(
        MetricSample(key_of_series, timestamp, value) for timestamp, value in points if not math.isnan(value)
    )


def hand_written(body: bytes, max_samples: int = 100_000) -> DecodedWrite:
    raw = bytes(cramjam.snappy.decompress_raw(body))
    limits = LabelLimits()
    decoded = DecodedWrite()
    pos, end = 0, len(raw)
    while pos < end:
        key, pos = _varint(raw, pos, end)
        if key == _TIMESERIES_TAG:
            start, pos = _length(raw, pos, end)
            _series(raw, start, pos, limits, decoded, max_samples)
        else:
            pos = _skip(raw, pos, end, key)
    return decoded


def _seconds(decoder: Decoder, data: bytes) -> float:
    gc.collect()  # garbage of the previous decode is not charged to this one
    started = time.perf_counter()
    decoder(data)
    return time.perf_counter() - started


def main(rounds: int) -> dict[str, dict[str, float]]:
    readers: dict[str, Decoder] = {"hand_written": hand_written, "library": decode_write_request}
    figures: dict[str, dict[str, float]] = {}
    for name, series, labels, samples in BODIES:
        data = body(series, labels, samples)
        count = series * samples
        if readers["hand_written"](data) != readers["library"](data):
            raise RuntimeError(f"the readers disagree about {name}")
        times: dict[str, list[float]] = {reader: [] for reader in readers}
        for round_ in range(rounds):
            order = list(readers) if round_ % 2 == 0 else list(reversed(readers))
            for reader in order:
                times[reader].append(_seconds(readers[reader], data))
        rates = {f"{reader}_samples_per_s": count / statistics.median(times[reader]) for reader in readers}
        rates["library_over_hand_written"] = rates["library_samples_per_s"] / rates["hand_written_samples_per_s"]
        figures[name] = {"samples": count, "body_bytes": len(data), **rates}
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = main(args.rounds)
    if args.json:
        print(json.dumps(result))
    else:
        for body_name, row in result.items():
            old, new = row["hand_written_samples_per_s"], row["library_samples_per_s"]
            print(
                f"{body_name:14} {row['samples']:>8.0f} samples  hand-written {old:>10.0f}/s"
                f"  library {new:>10.0f}/s  ratio {row['library_over_hand_written']:.2f}"
            )
