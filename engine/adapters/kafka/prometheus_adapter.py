"""Messages of the Telefonica prometheus-kafka-adapter (its JSON serialisation): one sample a message.

::

    {"timestamp": "2020-01-01T00:00:00Z", "value": "0.25", "name": "http_requests_total",
     "labels": {"__name__": "http_requests_total", "job": "api", "instance": "10.0.0.1:8080"}}

The timestamp is RFC 3339 (a fraction of a second and an offset allowed), the value a string as Go formats a float.
``labels`` carries ``__name__`` (it must equal ``name`` when both are given), which becomes the metric name and no
label. A value of ``NaN`` (Prometheus' staleness marker among them), ``+Inf`` or ``-Inf`` carries no measurement:
the message yields no sample, and is not a fault.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import orjson

from engine.adapters.kafka.schema import InvalidMessageError, MessageLimits, Run, checked_value
from engine.domain.events import SeriesKey
from engine.domain.limits import label_problem, metric_name_problem, quoted

_NAME_LABEL = "__name__"
# What Go's strconv.FormatFloat writes, and what float() takes besides (underscores, "infinity") is refused.
_NUMBER_CHARS = frozenset("0123456789+-.eEinfaINFA")


def decode_prometheus_adapter(value: bytes | None, key: bytes | None, limits: MessageLimits) -> list[Run]:
    """The one sample of a message as a run (none for a non-finite value); InvalidMessageError if it is not one."""
    body = checked_value(value, key, limits)
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessageError("malformed", f"not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidMessageError("schema", "a message must be a JSON object")
    labels = document.get("labels", {})
    if not isinstance(labels, dict) or not all(isinstance(text, str) for text in labels.values()):
        raise InvalidMessageError("schema", "'labels' must be an object of strings")
    labels = dict(labels)
    name = document.get("name", labels.get(_NAME_LABEL))
    if not isinstance(name, str):
        raise InvalidMessageError("schema", "the metric name ('name' or labels.__name__) must be a string")
    if labels.pop(_NAME_LABEL, name) != name:
        raise InvalidMessageError("schema", f"'name' {quoted(name)} is not labels.__name__")
    # Prometheus reads an empty label value as no label.
    labels = {label: text for label, text in labels.items() if text}
    problem = metric_name_problem(name, limits.labels) or label_problem(
        labels.items(), limits.labels, count=len(labels)
    )
    if problem is not None:
        raise InvalidMessageError("labels", problem.message)
    timestamp = _timestamp(document.get("timestamp"))
    number = _value(document.get("value"))
    if not math.isfinite(number):
        return []
    return [(SeriesKey(name, tuple(sorted(labels.items()))), np.array([[timestamp, number]], dtype=np.float64))]


def _timestamp(raw: object) -> float:
    if not isinstance(raw, str):
        raise InvalidMessageError("schema", f"'timestamp' must be an RFC 3339 string, got {raw!r:.64}")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidMessageError("schema", f"'timestamp' is not RFC 3339: {quoted(raw)}") from exc
    if moment.tzinfo is None:
        raise InvalidMessageError("schema", f"'timestamp' has no offset (Z or +hh:mm): {quoted(raw)}")
    return moment.timestamp()


def _value(raw: object) -> float:
    if not isinstance(raw, str) or not raw or not _NUMBER_CHARS.issuperset(raw) or len(raw) > 64:
        raise InvalidMessageError("schema", f"'value' must be a number in a string, got {raw!r:.64}")
    try:
        return float(raw)
    except ValueError as exc:
        raise InvalidMessageError("schema", f"'value' is not a number: {quoted(raw)}") from exc
