"""The JSON message schema of metric samples on Kafka, and its decoder.

A message carries samples of one series, in one of three shapes (the README documents them)::

    {"name": "latency_seconds", "labels": {"service": "api"}, "timestamp": 1700000000.0, "value": 0.25}
    {"name": "latency_seconds", "labels": {...}, "samples": [[1700000000.0, 0.25], [1700000060.0, 0.31]]}
    {"samples": [{"name": ..., "labels": ..., "timestamp": ..., "value": ...}, ...]}

The message key is the series key as ``str(SeriesKey)`` gives it (``latency_seconds{service="api"}``, Prometheus'
text form, whose label values escape backslashes, double quotes and line feeds), so one series always lands on one
partition and keeps its order; a key that names another series is rejected. Anything that does not decode or
validate raises ``InvalidMessageError`` with a reason, and goes to the dead-letter topic.

A message is bounded (``MessageLimits``): its size (value and key, checked before parsing: kind ``too_large``), its
number of samples, and its series' name and labels, which follow the engine's label rules (kind ``labels``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from engine.domain.batches import FloatArray, SampleBatch
from engine.domain.events import MetricSample, SeriesKey, freeze_labels
from engine.domain.limits import LabelLimits, label_problem, metric_name_problem, quoted

# A bound on one message, so that one huge message cannot take the engine's memory.
MAX_SAMPLES_PER_MESSAGE = 100_000
# One series' points (rows of timestamp, value) in time order: what a message yields, once or many times.
Run = tuple[SeriesKey, FloatArray]
TOO_LARGE = "too_large"


@dataclass(frozen=True)
class MessageLimits:
    """Bounds on one message: its size in bytes (value and key together) and its series' labels."""

    # Kafka's own default for a message (message.max.bytes).
    max_message_bytes: int = 1024 * 1024
    labels: LabelLimits = field(default_factory=LabelLimits)


_DEFAULT_LIMITS = MessageLimits()


class InvalidMessageError(ValueError):
    """A message that is not valid JSON or does not follow the schema; ``kind`` is a short, bounded category."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def decode_samples(
    value: bytes | None, key: bytes | None = None, limits: MessageLimits = _DEFAULT_LIMITS
) -> list[MetricSample]:
    """The samples one message carries, in message order; InvalidMessageError saying what is wrong."""
    series, points = decode_run(value, key, limits)
    return [MetricSample(series, timestamp, point) for timestamp, point in points.tolist()]


def decode_run(
    value: bytes | None, key: bytes | None = None, limits: MessageLimits = _DEFAULT_LIMITS
) -> tuple[SeriesKey, FloatArray]:
    """The one series a message carries and its points (rows of timestamp, value) in message order;
    InvalidMessageError saying what is wrong."""
    value = checked_value(value, key, limits)
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessageError("malformed", f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidMessageError("schema", "a message must be a JSON object")
    series, points = _run_of(document, value, limits.labels)
    if key is not None:
        try:
            text = key.decode()
        except UnicodeDecodeError as exc:
            raise InvalidMessageError("key", "the message key is not UTF-8") from exc
        if text != str(series):
            raise InvalidMessageError("key", f"message key {quoted(text)} is not the series key {quoted(str(series))}")
    return series, points


def decode_json_runs(value: bytes | None, key: bytes | None, limits: MessageLimits) -> list[Run]:
    """``decode_run`` as the runs every message format yields (the ``json`` format)."""
    return [decode_run(value, key, limits)]


def checked_value(value: bytes | None, key: bytes | None, limits: MessageLimits) -> bytes:
    """A message's value once it is known to be there and within its size bound (value and key together, checked
    before anything is parsed); InvalidMessageError otherwise. What every message format checks first."""
    if value is None:
        raise InvalidMessageError("malformed", "empty message (tombstone)")
    size = len(value) + (len(key) if key is not None else 0)
    if size > limits.max_message_bytes:
        raise InvalidMessageError(TOO_LARGE, f"message of {size} bytes, more than {limits.max_message_bytes}")
    return value


def check_sample_count(count: int) -> None:
    """InvalidMessageError if one message carries more samples than any message may."""
    if count > MAX_SAMPLES_PER_MESSAGE:
        raise InvalidMessageError("schema", f"more than {MAX_SAMPLES_PER_MESSAGE} samples in one message")


class SampleColumns:
    """Messages decoded into one columnar ``SampleBatch``: a message's points stay one array, its series is
    stored once."""

    def __init__(self) -> None:
        self._series: list[SeriesKey] = []
        self._blocks: list[FloatArray] = []
        self._count = 0

    def add(self, value: bytes | None, key: bytes | None = None, limits: MessageLimits = _DEFAULT_LIMITS) -> SeriesKey:
        """Decode one message into the batch and return its series; InvalidMessageError (and nothing added)
        if it does not decode or validate."""
        series, points = decode_run(value, key, limits)
        self.append(series, points)
        return series

    def append(self, series: SeriesKey, points: FloatArray) -> None:
        """Add the points of one message that ``decode_run`` decoded."""
        self._series.append(series)
        self._blocks.append(points)
        self._count += len(points)

    def __len__(self) -> int:
        return self._count

    def batch(self) -> SampleBatch:
        starts = np.zeros(len(self._blocks) + 1, dtype=np.int64)
        np.cumsum([len(block) for block in self._blocks], out=starts[1:])
        points = np.concatenate(self._blocks) if self._blocks else np.empty((0, 2))
        # Copies, so that each column is contiguous for the detectors.
        return SampleBatch(self._series, starts, np.ascontiguousarray(points[:, 0]), np.ascontiguousarray(points[:, 1]))


def series_key_bytes(series: SeriesKey) -> bytes:
    """The message key producers must use for ``series``."""
    return str(series).encode()


def encode_samples(series: SeriesKey, points: Sequence[tuple[float, float]]) -> bytes:
    """One message of ``series``'s points in the columnar shape (what producers of batches should send)."""
    return orjson.dumps({"name": series.name, "labels": series.label_map, "samples": points})


def _run_of(document: dict[str, Any], raw: bytes, limits: LabelLimits) -> tuple[SeriesKey, FloatArray]:
    points = document.get("samples")
    if "name" in document:
        series = _series(document, limits)
        if points is None:
            return series, np.array([_point(document.get("timestamp"), document.get("value"))])
        if not isinstance(points, list):
            raise InvalidMessageError("schema", "'samples' must be a list of [timestamp, value] pairs")
        _check_size(points)
        return series, _columnar(points, raw)
    if not isinstance(points, list):
        raise InvalidMessageError("schema", "a message needs 'name' (one series) or a list 'samples'")
    _check_size(points)
    rows = []
    first: SeriesKey | None = None
    for item in points:
        if not isinstance(item, dict):
            raise InvalidMessageError("schema", "each item of 'samples' must be an object with name, timestamp, value")
        series = _series(item, limits)
        if first is None:
            first = series
        elif series != first:
            raise InvalidMessageError("schema", "one message must carry samples of one series only (its key's)")
        rows.append(_point(item.get("timestamp"), item.get("value")))
    if first is None:
        raise InvalidMessageError("schema", "the message carries no samples")
    return first, np.array(rows, dtype=np.float64)


def _columnar(points: list[Any], raw: bytes) -> FloatArray:
    # The shape batch producers send, checked as a whole. numpy infers a number dtype only when every entry is a
    # number or a bool, so the entry-by-entry check runs only where numpy saw something else, or where the raw
    # message has a JSON true/false that may hide among the numbers (numpy would take it as 1 or 0).
    if not points:
        raise InvalidMessageError("schema", "the message carries no samples")
    try:
        array = np.array(points)
    except (ValueError, OverflowError):
        array = None
    if (
        array is None
        or array.ndim != 2
        or array.shape[1] != 2
        or array.dtype.kind not in "fi"
        or b"true" in raw
        or b"false" in raw
    ):
        _check_entries(points)
        try:
            array = np.array(points, dtype=np.float64)
        except OverflowError as exc:
            raise InvalidMessageError("schema", f"a number out of range: {exc}") from exc
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise InvalidMessageError("schema", "timestamps and values must be finite")
    return array


def _check_entries(points: list[Any]) -> None:
    if not all(type(point) is list and len(point) == 2 for point in points):
        raise InvalidMessageError("schema", "each sample must be a [timestamp, value] pair")
    if not all(type(number) is float or type(number) is int for point in points for number in point):
        bad = next(n for p in points for n in p if type(n) is not float and type(n) is not int)
        raise InvalidMessageError("schema", f"timestamps and values must be numbers, got {bad!r}")


def _check_size(points: list[Any]) -> None:
    check_sample_count(len(points))


def _series(item: Mapping[str, Any], limits: LabelLimits) -> SeriesKey:
    name = item.get("name")
    if not isinstance(name, str):
        raise InvalidMessageError("schema", f"the metric name must be a string, got {type(name).__name__}")
    labels = item.get("labels", {})
    if not isinstance(labels, dict):
        raise InvalidMessageError("schema", "'labels' must be an object of strings")
    for label, text in labels.items():
        if not isinstance(text, str):
            raise InvalidMessageError("schema", f"the value of label {quoted(label)} must be a string")
    problem = metric_name_problem(name, limits) or label_problem(labels.items(), limits, count=len(labels))
    if problem is not None:
        raise InvalidMessageError("labels", problem.message)
    return SeriesKey(name, freeze_labels(labels))


def _point(timestamp: object, value: object) -> tuple[float, float]:
    return _number(timestamp, "timestamp"), _number(value, "value")


def _number(raw: object, what: str) -> float:
    # bool is an int in Python, but true/false is not a measurement.
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise InvalidMessageError("schema", f"{what} must be a number, got {raw!r}")
    number = float(raw)
    if not math.isfinite(number):
        raise InvalidMessageError("schema", f"{what} must be finite, got {raw!r}")
    return number
