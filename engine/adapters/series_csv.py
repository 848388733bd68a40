"""Reads one series from a ``timestamp,value`` CSV file (the bundled scenarios' and NAB's format).

Timestamps are ISO 8601; those without a zone are taken as UTC. An empty value is a missing point (NaN).
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from engine.domain.errors import ConfigurationError

FloatArray = npt.NDArray[np.float64]


def parse_timestamp(text: str) -> float:
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def read_series_csv(path: Path) -> tuple[FloatArray, FloatArray]:
    """(timestamps in epoch seconds, values) of the file; ConfigurationError naming the line of a bad row."""
    timestamps: list[float] = []
    values: list[float] = []
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header != ["timestamp", "value"]:
                raise ConfigurationError(f"{path}: the header must be 'timestamp,value', found {header}")
            for line, row in enumerate(reader, start=2):
                try:
                    timestamps.append(parse_timestamp(row[0]))
                    values.append(float(row[1]) if row[1] else float("nan"))
                except (ValueError, IndexError) as exc:
                    raise ConfigurationError(f"{path}:{line}: cannot read row {row}: {exc}") from exc
    except OSError as exc:
        raise ConfigurationError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    return np.asarray(timestamps, dtype=np.float64), np.asarray(values, dtype=np.float64)
