import asyncio
from pathlib import Path

import numpy as np
import pytest

from engine.adapters.scenario_files import load_scenario
from engine.adapters.sources.replay import ReplaySource
from engine.app.settings import BUNDLED_SCENARIO
from engine.domain.clock import FakeClock
from engine.domain.errors import ConfigurationError
from engine.domain.events import SeriesKey
from engine.domain.scenario import RecordedSeries, Scenario


def _scenario() -> Scenario:
    stamps = np.arange(0.0, 600.0, 60.0)
    return Scenario(
        "s",
        "",
        60.0,
        (
            RecordedSeries(SeriesKey.of("a"), stamps, np.arange(10.0)),
            RecordedSeries(SeriesKey.of("b"), stamps, -np.arange(10.0)),
        ),
        (),
    )


async def _collect(source: ReplaySource) -> list[list[float]]:
    return [[s.timestamp for s in batch] async for batch in source.batches()]


async def test_fast_replay_yields_every_sample_in_time_order() -> None:
    batches = await _collect(ReplaySource(_scenario(), FakeClock(), speed=None))
    flat = [t for batch in batches for t in batch]
    assert len(flat) == 20
    assert flat == sorted(flat)


async def test_paced_replay_waits_for_the_clock() -> None:
    clock = FakeClock()
    source = ReplaySource(_scenario(), clock, speed=60.0)  # one step (60 s of event time) per wall second
    seen: list[int] = []

    async def consume() -> None:
        async for batch in source.batches():
            seen.append(len(batch))

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    assert seen == [2]
    clock.advance(1.0)
    await asyncio.sleep(0)
    assert seen == [2, 2]
    for _ in range(8):
        clock.advance(1.0)
        await asyncio.sleep(0)
    await task
    assert sum(seen) == 20


def test_bundled_scenario_loads_with_its_episodes() -> None:
    scenario = load_scenario(BUNDLED_SCENARIO)
    assert len(scenario.series) == 11
    assert [e.kind for e in scenario.episodes] == [
        "traffic_surge",
        "slow_dependency",
        "bad_rollout",
        "gpu_memory_leak",
        "feature_drift",
    ]
    # Each problem starts on its cause and moves one or two related series.
    assert [len(e.moves) for e in scenario.episodes] == [2, 1, 2, 2, 1]
    assert all(e.series not in e.moves for e in scenario.episodes)
    assert scenario.sample_count == 11 * 2880


def test_missing_scenario_directory_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_scenario(tmp_path / "nope")
