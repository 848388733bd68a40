"""Signals as JSON-ready documents and back: the one serializer of ``Signal``, used wherever one is written (the
store, the checkpoints, the API and the incident events on Kafka), so that every reader reads the same fields."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.domain.events import SeriesKey, Severity, Signal


def signal_document(signal: Signal) -> dict[str, Any]:
    return {
        "series": str(signal.series),
        "name": signal.series.name,
        "labels": signal.series.label_map,
        "first_at": signal.first_at,
        "last_at": signal.last_at,
        "peak_at": signal.peak_at,
        "peak_value": signal.peak_value,
        "peak_score": signal.peak_score,
        "count": signal.count,
        "severity": signal.severity.label,
        "quiet_at": signal.quiet_at,
        "alert": signal.alert,
    }


def signal_of_document(document: Mapping[str, Any]) -> Signal:
    """A signal from ``signal_document``'s output (KeyError, ValueError or TypeError when it is not one)."""
    quiet_at = document["quiet_at"]
    return Signal(
        series=SeriesKey.of(str(document["name"]), {str(k): str(v) for k, v in dict(document["labels"]).items()}),
        first_at=float(document["first_at"]),
        last_at=float(document["last_at"]),
        peak_at=float(document["peak_at"]),
        peak_value=float(document["peak_value"]),
        peak_score=float(document["peak_score"]),
        count=int(document["count"]),
        severity=Severity.parse(str(document["severity"])),
        quiet_at=None if quiet_at is None else float(quiet_at),
        alert=bool(document["alert"]),
    )


def signal_documents(signals: Sequence[Signal]) -> list[dict[str, Any]]:
    return [signal_document(signal) for signal in signals]


def signals_of_documents(documents: Sequence[Mapping[str, Any]] | None) -> tuple[Signal, ...]:
    return () if not documents else tuple(signal_of_document(document) for document in documents)
