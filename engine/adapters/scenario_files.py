"""Reads a replay scenario directory: ``scenario.yaml`` (series and labelled episodes) and one CSV per series."""

from __future__ import annotations

from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PositiveFloat

from engine.adapters.series_csv import read_series_csv
from engine.adapters.yaml_documents import load_model
from engine.domain.errors import ConfigurationError
from engine.domain.events import SeriesKey
from engine.domain.scenario import Episode, RecordedSeries, Scenario

SCENARIO_FILE = "scenario.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SeriesEntry(_Strict):
    file: str = Field(pattern=r"^[\w.-]+\.csv$")
    name: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    labels: dict[str, str] = Field(default_factory=dict)


class EpisodeEntry(_Strict):
    kind: str
    # The series where the problem starts (its cause), and the other series it moves.
    file: str
    moves: list[str] = Field(default_factory=list)
    start: AwareDatetime
    end: AwareDatetime
    description: str = ""


class ScenarioDocument(_Strict):
    name: str
    description: str = ""
    step_s: PositiveFloat
    series: list[SeriesEntry] = Field(min_length=1)
    episodes: list[EpisodeEntry] = Field(default_factory=list)


def load_scenario(directory: Path) -> Scenario:
    """The scenario in ``directory``; ConfigurationError with a one-line reason when it cannot be used."""
    if not directory.is_dir():
        raise ConfigurationError(f"scenario directory {directory} does not exist or is not a directory")
    document = load_model(directory / SCENARIO_FILE, ScenarioDocument)
    keys: dict[str, SeriesKey] = {}
    series: list[RecordedSeries] = []
    for entry in document.series:
        key = SeriesKey.of(entry.name, entry.labels)
        timestamps, values = read_series_csv(directory / entry.file)
        keys[entry.file] = key
        series.append(RecordedSeries(key, timestamps, values))
    episodes = []
    for episode in document.episodes:
        for file in [episode.file, *episode.moves]:
            if file not in keys:
                raise ConfigurationError(f"{directory / SCENARIO_FILE}: episode refers to unknown file {file}")
        episodes.append(
            Episode(
                episode.kind,
                keys[episode.file],
                episode.start.timestamp(),
                episode.end.timestamp(),
                episode.description,
                tuple(keys[file] for file in episode.moves),
            )
        )
    return Scenario(document.name, document.description, document.step_s, tuple(series), tuple(episodes))
