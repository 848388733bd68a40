"""The JSON message schema of metric samples on Kafka, and its decoder.

A message carries samples of one series, in one of three shapes (the README documents them)::

    {"name": "latency_seconds", "labels": {"service": "api"}, "timestamp": 1700000000.0, "value": 0.25}
    {"name": "latency_seconds", "labels": {...}, "samples": [[1700000000.0, 0.25], [1700000060.0, 0.31]]}
    {"samples": [{"name": ..., "labels": ..., "timestamp": ..., "value": ...}, ...]}

The message key is the series key as ``str(SeriesKey)`` gives it (``latency_seconds{service="api"}``), so one
series always lands on one partition and keeps its order; a key that names another series is rejected. Anything
that does not decode or validate raises ``InvalidMessageError`` with a reason, and goes to the dead-letter topic.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from engine.domain.events import MetricSample, SeriesKey, freeze_labels

_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
# A bound on one message, so that one huge message cannot take the engine's memory.
MAX_SAMPLES_PER_MESSAGE = 100_000


class InvalidMessageError(ValueError):
    """A message that is not valid JSON or does not follow the schema; ``kind`` is a short, bounded category."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def decode_samples(value: bytes | None, key: bytes | None = None) -> list[MetricSample]:
    """The samples one message carries, in message order; InvalidMessageError saying what is wrong."""
    if value is None:
        raise InvalidMessageError("malformed", "empty message (tombstone)")
    try:
        document = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessageError("malformed", f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidMessageError("schema", "a message must be a JSON object")
    samples = _samples_of(document)
    if not samples:
        raise InvalidMessageError("schema", "the message carries no samples")
    series = samples[0].series
    # Identity first: the columnar shape shares one key object, so the comparison is rarely needed.
    if any(sample.series is not series and sample.series != series for sample in samples):
        raise InvalidMessageError("schema", "one message must carry samples of one series only (its key's)")
    if key is not None:
        try:
            text = key.decode()
        except UnicodeDecodeError as exc:
            raise InvalidMessageError("key", "the message key is not UTF-8") from exc
        if text != str(series):
            raise InvalidMessageError("key", f"message key {text!r} is not the series key {str(series)!r}")
    return samples


def series_key_bytes(series: SeriesKey) -> bytes:
    """The message key producers must use for ``series``."""
    return str(series).encode()


def encode_samples(series: SeriesKey, points: Sequence[tuple[float, float]]) -> bytes:
    """One message of ``series``'s points in the columnar shape (what producers of batches should send)."""
    return orjson.dumps({"name": series.name, "labels": series.label_map, "samples": points})


def _samples_of(document: dict[str, Any]) -> list[MetricSample]:
    points = document.get("samples")
    if "name" in document:
        series = _series(document)
        if points is None:
            return [MetricSample(series, *_point(document.get("timestamp"), document.get("value")))]
        if not isinstance(points, list):
            raise InvalidMessageError("schema", "'samples' must be a list of [timestamp, value] pairs")
        _check_size(points)
        return _columnar(series, points)
    if not isinstance(points, list):
        raise InvalidMessageError("schema", "a message needs 'name' (one series) or a list 'samples'")
    _check_size(points)
    out = []
    for item in points:
        if not isinstance(item, dict):
            raise InvalidMessageError("schema", "each item of 'samples' must be an object with name, timestamp, value")
        out.append(MetricSample(_series(item), *_point(item.get("timestamp"), item.get("value"))))
    return out


def _columnar(series: SeriesKey, points: list[Any]) -> list[MetricSample]:
    # The shape batch producers send: checked as a whole (types first: numpy would take "1.5" or true as numbers).
    if not all(type(point) is list and len(point) == 2 for point in points):
        raise InvalidMessageError("schema", "each sample must be a [timestamp, value] pair")
    if not all(type(number) is float or type(number) is int for point in points for number in point):
        bad = next(n for p in points for n in p if type(n) is not float and type(n) is not int)
        raise InvalidMessageError("schema", f"timestamps and values must be numbers, got {bad!r}")
    try:
        array = np.array(points, dtype=np.float64)
    except OverflowError as exc:
        raise InvalidMessageError("schema", f"a number out of range: {exc}") from exc
    if not np.isfinite(array).all():
        raise InvalidMessageError("schema", "timestamps and values must be finite")
    return [MetricSample(series, timestamp, value) for timestamp, value in array.tolist()]


def _check_size(points: list[Any]) -> None:
    if len(points) > MAX_SAMPLES_PER_MESSAGE:
        raise InvalidMessageError("schema", f"more than {MAX_SAMPLES_PER_MESSAGE} samples in one message")


def _series(item: Mapping[str, Any]) -> SeriesKey:
    name = item.get("name")
    if not isinstance(name, str) or not _METRIC_NAME.match(name):
        raise InvalidMessageError("schema", f"invalid metric name {name!r}")
    labels = item.get("labels", {})
    if not isinstance(labels, dict):
        raise InvalidMessageError("schema", "'labels' must be an object of strings")
    for label, text in labels.items():
        if not _LABEL_NAME.match(label) or not isinstance(text, str):
            raise InvalidMessageError("schema", f"invalid label {label!r}={text!r}; values must be strings")
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
