"""Loading a corpus in the NAB layout, and reading and writing per-file score CSVs.

A corpus directory holds ``data/<category>/<file>.csv`` (columns ``timestamp,value``),
``labels/combined_windows.json`` (``{"<category>/<file>.csv": [[start, end], ...]}`` with timestamp strings) and
``config/profiles.json`` (``{profile: {"CostMatrix": {"tpWeight", "fnWeight", "fpWeight"}}}``). Windows are turned
into row indices here: the first row whose timestamp equals the window's start, and likewise for its end.
Any layout problem raises ``CorpusLayoutError`` naming the file at fault.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from detectors.base import FloatArray
from detectors.nab.scoring import CostProfile, ScoredSeries, ScoringError, Window, check_windows

LABELS_FILE = Path("labels") / "combined_windows.json"
PROFILES_FILE = Path("config") / "profiles.json"
DATA_DIR = Path("data")
SCORE_COLUMN = "anomaly_score"

DatetimeArray = npt.NDArray[np.datetime64]


class CorpusLayoutError(ValueError):
    """Raised when a corpus or scores directory does not follow the NAB layout; the message names the file."""


@dataclass(frozen=True)
class CorpusFile:
    """One data file: its rows and its anomaly windows as row indices."""

    key: str  # "<category>/<file>.csv", as in the labels file
    timestamps: FloatArray  # epoch seconds (UTC)
    values: FloatArray
    windows: tuple[Window, ...]

    @property
    def n_rows(self) -> int:
        return len(self.values)

    def with_scores(self, scores: FloatArray) -> ScoredSeries:
        """This file's windows paired with a detector's scores for its rows."""
        if len(scores) != self.n_rows:
            raise ScoringError(f"{self.key}: {len(scores)} scores for {self.n_rows} rows")
        return ScoredSeries(scores=scores, windows=self.windows)


@dataclass(frozen=True)
class Corpus:
    """Every data file of a corpus, in sorted key order, with the corpus's cost profiles."""

    root: Path
    files: tuple[CorpusFile, ...]
    profiles: Mapping[str, CostProfile]

    @property
    def n_rows(self) -> int:
        return sum(file.n_rows for file in self.files)


def load_corpus(root: Path) -> Corpus:
    """Read the corpus at ``root``; raise ``CorpusLayoutError`` if its layout is wrong."""
    labels = _read_labels(root / LABELS_FILE)
    data_dir = root / DATA_DIR
    if not data_dir.is_dir():
        raise CorpusLayoutError(f"{data_dir}: data directory not found")
    found = {path.relative_to(data_dir).as_posix(): path for path in sorted(data_dir.glob("*/*.csv"))}
    if not found:
        raise CorpusLayoutError(f"{data_dir}: no <category>/<file>.csv data files")
    unlabelled = sorted(set(found) - set(labels))
    if unlabelled:
        raise CorpusLayoutError(f"{root / LABELS_FILE}: no entry for data file(s) {', '.join(unlabelled)}")
    missing = sorted(set(labels) - set(found))
    if missing:
        raise CorpusLayoutError(f"{data_dir}: labelled file(s) missing: {', '.join(missing)}")
    files = tuple(_load_file(key, found[key], labels[key]) for key in sorted(found))
    return Corpus(root=root, files=files, profiles=read_profiles(root / PROFILES_FILE))


def read_profiles(path: Path) -> Mapping[str, CostProfile]:
    """The cost profiles of ``config/profiles.json``."""
    raw = _read_json(path)
    if not isinstance(raw, dict) or not raw:
        raise CorpusLayoutError(f"{path}: expected an object of profiles")
    profiles: dict[str, CostProfile] = {}
    for name, entry in raw.items():
        matrix = entry.get("CostMatrix") if isinstance(entry, dict) else None
        try:
            weights = {key: float(matrix[key]) for key in ("tpWeight", "fnWeight", "fpWeight")}  # type: ignore[index]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorpusLayoutError(
                f"{path}: profile {name!r} needs CostMatrix with numeric tpWeight, fnWeight, fpWeight"
            ) from exc
        profiles[name] = CostProfile(
            name=name, tp_weight=weights["tpWeight"], fn_weight=weights["fnWeight"], fp_weight=weights["fpWeight"]
        )
    return MappingProxyType(profiles)


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise CorpusLayoutError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise CorpusLayoutError(f"{path}: invalid JSON ({exc})") from exc


def _read_labels(path: Path) -> dict[str, list[tuple[str, str]]]:
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise CorpusLayoutError(f"{path}: expected an object keyed by <category>/<file>.csv")
    labels: dict[str, list[tuple[str, str]]] = {}
    for key, windows in raw.items():
        if not isinstance(windows, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(edge, str) for edge in pair)
            for pair in windows
        ):
            raise CorpusLayoutError(f"{path}: {key!r} must map to a list of [start, end] timestamp strings")
        labels[key] = [(start, end) for start, end in windows]
    return labels


def _parse_times(texts: Sequence[str], where: str) -> DatetimeArray:
    try:
        return np.array(texts, dtype="datetime64[us]")
    except ValueError as exc:
        raise CorpusLayoutError(f"{where}: unreadable timestamp ({exc})") from exc


def _load_file(key: str, path: Path, labelled: list[tuple[str, str]]) -> CorpusFile:
    columns = read_columns(path, ("timestamp", "value"))
    times = _parse_times(columns["timestamp"], str(path))
    try:
        values = np.array(columns["value"], dtype=np.float64)
    except ValueError as exc:
        raise CorpusLayoutError(f"{path}: non-numeric value ({exc})") from exc
    windows = tuple(_window(path, key, times, start, end) for start, end in labelled)
    try:
        check_windows(len(values), windows)
    except ScoringError as exc:
        raise CorpusLayoutError(f"{path}: {exc}") from exc
    epoch = (times - np.datetime64(0, "us")).astype(np.int64) / 1e6
    return CorpusFile(key=key, timestamps=epoch, values=values, windows=windows)


def _window(path: Path, key: str, times: DatetimeArray, start: str, end: str) -> Window:
    edges = _parse_times([start, end], f"labels for {key}")
    indices = []
    for edge, text in zip(edges, (start, end), strict=True):
        hits = np.flatnonzero(times == edge)
        if not len(hits):
            raise CorpusLayoutError(f"{path}: window edge {text!r} matches no row's timestamp")
        indices.append(int(hits[0]))
    return Window(start=indices[0], end=indices[1])


def read_columns(path: Path, names: Sequence[str]) -> dict[str, list[str]]:
    """The named columns of a CSV file with a header row, as text."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            try:
                positions = [header.index(name) for name in names]
            except ValueError:
                raise CorpusLayoutError(f"{path}: header must name columns {', '.join(names)}") from None
            columns: dict[str, list[str]] = {name: [] for name in names}
            for line, row in enumerate(reader, start=2):
                try:
                    for name, position in zip(names, positions, strict=True):
                        columns[name].append(row[position])
                except IndexError:
                    raise CorpusLayoutError(f"{path}:{line}: too few columns") from None
    except FileNotFoundError:
        raise CorpusLayoutError(f"{path}: file not found") from None
    return columns


def scores_path(scores_dir: Path, key: str) -> Path:
    """Where a scores directory keeps the scores of data file ``key``.

    Both this project's layout (``<dir>/<category>/<file>.csv``) and NAB's results layout
    (``results/<detector>/<category>/<detector>_<file>.csv``) are accepted; the first that exists wins.
    """
    category, _, name = key.rpartition("/")
    own = scores_dir / key
    nab = scores_dir / category / f"{scores_dir.name}_{name}"
    return own if own.is_file() or not nab.is_file() else nab


def read_scores(scores_dir: Path, file: CorpusFile) -> FloatArray:
    """The saved ``anomaly_score`` column for ``file``; it must have one score per data row."""
    path = scores_path(scores_dir, file.key)
    text = read_columns(path, (SCORE_COLUMN,))[SCORE_COLUMN]
    try:
        scores = np.array(text, dtype=np.float64)
    except ValueError as exc:
        raise CorpusLayoutError(f"{path}: non-numeric {SCORE_COLUMN} ({exc})") from exc
    if len(scores) != file.n_rows:
        raise CorpusLayoutError(f"{path}: {len(scores)} scores for the {file.n_rows} rows of {file.key}")
    return scores


def write_scores(scores_dir: Path, file: CorpusFile, scores: FloatArray) -> Path:
    """Save ``scores`` for ``file`` as ``<dir>/<category>/<file>.csv`` (timestamp, value, anomaly_score)."""
    path = scores_dir / file.key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(("timestamp", "value", SCORE_COLUMN))
        writer.writerows(
            (repr(float(stamp)), repr(float(value)), repr(float(score)))
            for stamp, value, score in zip(file.timestamps, file.values, scores, strict=True)
        )
    return path
