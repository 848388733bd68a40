"""Names from other metric systems made into Prometheus names: what OTLP attributes and Influx tags and fields
become as the engine's labels and metric names.

The rules are those of OpenTelemetry's Prometheus compatibility (the collector's Prometheus exporter): every
character outside ``[a-zA-Z0-9_]`` (``[a-zA-Z0-9_:]`` in a metric name) becomes ``_``; a label name that starts
with a digit gets the prefix ``key_``, one that starts with ``_`` the prefix ``key`` (the engine reserves ``__``);
a metric name that starts with a digit gets the prefix ``_``. Two names that become the same label keep both
values, joined with ``;`` in the order of the original names, sorted. No unit or ``_total`` suffix is added.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_METRIC_INVALID = re.compile(r"[^a-zA-Z0-9_:]")
_PLAIN_LABEL = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")


def label_name(name: str) -> str:
    """``name`` as a valid label name (an empty name stays empty: the label rules refuse it)."""
    if _PLAIN_LABEL.fullmatch(name):
        return name
    name = _LABEL_INVALID.sub("_", name)
    if name[:1].isdigit():
        return "key_" + name
    if name[:1] == "_":
        return "key" + name
    return name


def metric_name(name: str) -> str:
    """``name`` as a valid metric name (an empty name stays empty: the name rules refuse it)."""
    name = _METRIC_INVALID.sub("_", name)
    return "_" + name if name[:1].isdigit() else name


def sanitized_labels(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Attributes as labels: names sanitised, empty values left out (Prometheus reads an empty label as none),
    colliding names' values joined with ``;`` in the order of the original names."""
    labels: dict[str, str] = {}
    originals: dict[str, list[tuple[str, str]]] = {}
    for name, value in pairs:
        if not value:
            continue
        label = label_name(name)
        if label in labels:
            originals[label].append((name, value))
            continue
        labels[label] = value
        originals[label] = [(name, value)]
    for label, sources in originals.items():
        if len(sources) > 1:
            labels[label] = ";".join(value for _, value in sorted(sources))
    return labels
