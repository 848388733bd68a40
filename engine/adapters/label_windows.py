"""Reads labelled anomaly windows in NAB's ``combined_windows.json`` format for one data file."""

from __future__ import annotations

import json
from pathlib import Path

from engine.adapters.series_csv import parse_timestamp
from engine.domain.errors import ConfigurationError


def windows_for(labels_file: Path, data_file: Path) -> list[tuple[float, float]]:
    """The windows labelled for ``data_file`` (matched by the key that ends with its category/name or name)."""
    try:
        table = json.loads(labels_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"{labels_file}: cannot read labels: {exc}") from exc
    if not isinstance(table, dict):
        raise ConfigurationError(f"{labels_file}: expected an object keyed by data file")
    wanted = (f"{data_file.parent.name}/{data_file.name}", data_file.name)
    for key, windows in table.items():
        if str(key).endswith(wanted[0]) or str(key) == wanted[1]:
            try:
                return [(parse_timestamp(start), parse_timestamp(end)) for start, end in windows]
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"{labels_file}: bad window for {key}: {exc}") from exc
    raise ConfigurationError(f"{labels_file}: no windows for {data_file.name}")
