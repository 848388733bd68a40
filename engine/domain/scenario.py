"""A replay scenario: recorded series of a serving stack and the labelled episodes hidden in them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from engine.domain.events import SeriesKey


@dataclass(frozen=True)
class RecordedSeries:
    key: SeriesKey
    timestamps: npt.NDArray[np.float64]
    values: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Episode:
    """A labelled problem, [start, end] in epoch seconds: ``series`` is where it starts (its cause) and ``moves``
    the other series it moves, later."""

    kind: str
    series: SeriesKey
    start: float
    end: float
    description: str = ""
    moves: tuple[SeriesKey, ...] = ()

    @property
    def affected(self) -> tuple[SeriesKey, ...]:
        """Every series the problem moves, its cause first."""
        return (self.series, *self.moves)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    step_s: float
    series: tuple[RecordedSeries, ...]
    episodes: tuple[Episode, ...]

    @property
    def sample_count(self) -> int:
        return sum(len(s.values) for s in self.series)

    @property
    def span(self) -> tuple[float, float]:
        starts = [float(s.timestamps[0]) for s in self.series if len(s.timestamps)]
        ends = [float(s.timestamps[-1]) for s in self.series if len(s.timestamps)]
        return (min(starts), max(ends)) if starts else (0.0, 0.0)
