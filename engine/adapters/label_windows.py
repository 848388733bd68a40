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
    # NAB keys are "category/file.csv": prefer the key naming this file's folder too, else the only one of its name.
    exact = [key for key in table if str(key).endswith(f"{data_file.parent.name}/{data_file.name}")]
    by_name = [key for key in table if str(key).rsplit("/", 1)[-1] == data_file.name]
    candidates = exact or by_name
    if len(candidates) != 1:
        found = "no windows" if not candidates else f"several entries ({', '.join(map(str, candidates))})"
        raise ConfigurationError(f"{labels_file}: {found} for {data_file.name}")
    key = candidates[0]
    try:
        return [(parse_timestamp(start), parse_timestamp(end)) for start, end in table[key]]
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"{labels_file}: bad window for {key}: {exc}") from exc
