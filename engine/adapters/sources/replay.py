"""Replays a recorded scenario as a live stream, either paced (``speed`` times faster than real time) or as fast
as the pipeline accepts it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import numpy as np

from engine.domain.clock import Clock
from engine.domain.events import MetricSample
from engine.domain.scenario import Scenario

# Event time covered by one batch when replaying as fast as possible: large batches keep the vectorised
# detectors busy; one hour of one-minute samples is still small.
FAST_BATCH_SPAN_S = 3600.0


class ReplaySource:
    def __init__(self, scenario: Scenario, clock: Clock, *, speed: float | None) -> None:
        """``speed``: event seconds per wall second (e.g. 3000); None replays as fast as possible."""
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive")
        self._scenario = scenario
        self._clock = clock
        self._speed = speed

    @property
    def total_samples(self) -> int:
        return self._scenario.sample_count

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        series = self._scenario.series
        if not series:
            return
        timestamps = np.concatenate([s.timestamps for s in series])
        values = np.concatenate([s.values for s in series])
        owners = np.concatenate([np.full(len(s.timestamps), i, dtype=np.int64) for i, s in enumerate(series)])
        # Stable, so each series keeps its own order when timestamps tie.
        order = np.argsort(timestamps, kind="stable")
        timestamps, values, owners = timestamps[order], values[order], owners[order]

        span = FAST_BATCH_SPAN_S if self._speed is None else self._scenario.step_s
        first = float(timestamps[0])
        bucket = np.floor((timestamps - first) / span).astype(np.int64)
        cuts = np.flatnonzero(np.diff(bucket)) + 1
        started = self._clock.now()
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, len(timestamps)], strict=True):
            if self._speed is not None:
                due = started + (float(timestamps[lo]) - first) / self._speed
                await self._clock.sleep(due - self._clock.now())
            else:
                # Let other tasks (the HTTP server, signal handling) run between batches.
                await self._clock.sleep(0)
            yield [
                MetricSample(series[int(owners[i])].key, float(timestamps[i]), float(values[i]))
                for i in range(int(lo), int(hi))
            ]
