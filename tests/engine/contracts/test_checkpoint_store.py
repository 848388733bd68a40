"""The contract of the checkpoint store port (``engine.core.checkpoints.CheckpointStore``), checked against every
implementation: the SQL store on SQLite and on PostgreSQL (no other implementation exists; the Kafka source is its
only user, and tests of it run on a real store).

Per consumer group, a partition's position only moves forward: a checkpoint behind the kept one (from a member that
lost the partition meanwhile) changes nothing. Series states come back exactly as saved, under exactly the series
they were saved for.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.core.checkpoints import CheckpointStore, PartitionCheckpoint, SeriesState
from engine.core.detection import DetectorSlotState
from engine.domain.events import SeriesKey
from tests.engine.factories import anomaly, incident

GROUP = "aiops-engine"
PLAIN = SeriesKey.of("latency_ms", {"pod": "a"})
# Label values that only an escaped key keeps apart, and texts a careless key would read as other series.
AWKWARD = [
    SeriesKey.of("latency_ms", {"pod": 'say "hi"'}),
    SeriesKey.of("latency_ms", {"pod": "C:\\temp\\", "path": "\\n is not a line feed"}),
    SeriesKey.of("latency_ms", {"pod": "two\nlines", "empty": ""}),
    SeriesKey.of("latency_ms", {"pod": "ünïcødé ✓ 🚀", "set": '{a="1",b="2"}'}),
    SeriesKey.of("latency_ms", {"pod": '1",zone="2'}),
    SeriesKey.of("latency_ms", {"pod": "1", "zone": "2"}),
    SeriesKey.of("latency_ms", {"pod": "x" * 1024, "zone": '"\\\n'}),
    SeriesKey.of("up"),
]

# What one partition holds, comparable even with NaN in a state: each series' state as its document's JSON text.
Held = dict[SeriesKey, str]


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[CheckpointStore]:
    opened = await SqlStore.open(database_url)
    yield opened
    await opened.close()


def _state(series: SeriesKey, n: float, *, live: bool = True) -> SeriesState:
    detection = DetectorSlotState({"n": n, "mean": 101.5, "window": [1.0, 2.5, n]}, {"last_fired": None})
    if not live:
        return SeriesState(detection)
    return SeriesState(detection, incident(series=series), (anomaly(100.0 + n, series=series),))


def _held(states: Mapping[SeriesKey, SeriesState]) -> Held:
    return {series: json.dumps(state.document(series), sort_keys=True) for series, state in states.items()}


async def _load(
    store: CheckpointStore, partitions: Sequence[tuple[str, int]], group: str = GROUP
) -> dict[tuple[str, int], tuple[int, Held]]:
    loaded = await store.load_checkpoints(group, partitions)
    by_partition = {(c.topic, c.partition): (c.offset, _held(c.states)) for c in loaded}
    assert len(by_partition) == len(loaded), "a partition came back twice"
    return by_partition


async def test_states_come_back_exactly_as_saved_under_the_series_they_were_saved_for(
    store: CheckpointStore,
) -> None:
    states = {series: _state(series, float(i)) for i, series in enumerate(AWKWARD)}
    await store.save_checkpoints(GROUP, [PartitionCheckpoint("samples", 3, 42, states)])
    [loaded] = await store.load_checkpoints(GROUP, [("samples", 3)])
    assert (loaded.topic, loaded.partition, loaded.offset) == ("samples", 3, 42)
    assert dict(loaded.states) == states


async def test_nan_and_infinities_in_states_round_trip(store: CheckpointStore) -> None:
    # Some detectors keep unbounded extremes or undefined statistics; null in their place would corrupt them.
    states = {
        PLAIN: SeriesState(
            DetectorSlotState({"low": math.inf, "high": -math.inf, "gap": math.nan, "n": 3.0}, {"cooldown": math.inf})
        ),
        AWKWARD[0]: _state(AWKWARD[0], math.nan),
    }
    await store.save_checkpoints(GROUP, [PartitionCheckpoint("samples", 0, 7, states)])
    [loaded] = await store.load_checkpoints(GROUP, [("samples", 0)])
    assert _held(loaded.states) == _held(states)
    restored = loaded.states[PLAIN].detection
    assert (restored.detector["low"], restored.detector["high"], restored.threshold["cooldown"]) == (
        math.inf,
        -math.inf,
        math.inf,
    )
    assert math.isnan(restored.detector["gap"])


async def test_a_later_position_wins_and_series_not_given_keep_their_earlier_state(store: CheckpointStore) -> None:
    first, second, third = (SeriesKey.of("latency_ms", {"pod": pod}) for pod in "abc")
    await store.save_checkpoints(
        GROUP, [PartitionCheckpoint("samples", 0, 10, {first: _state(first, 1.0), second: _state(second, 2.0)})]
    )
    await store.save_checkpoints(
        GROUP, [PartitionCheckpoint("samples", 0, 20, {second: _state(second, 20.0), third: _state(third, 30.0)})]
    )
    # A checkpoint with no series touched since the previous one still moves the position.
    await store.save_checkpoints(GROUP, [PartitionCheckpoint("samples", 0, 25, {})])
    assert await _load(store, [("samples", 0)]) == {
        ("samples", 0): (
            25,
            _held({first: _state(first, 1.0), second: _state(second, 20.0), third: _state(third, 30.0)}),
        )
    }


async def test_a_checkpoint_behind_the_kept_position_changes_nothing(store: CheckpointStore) -> None:
    kept, only_in_stale = SeriesKey.of("latency_ms", {"pod": "a"}), SeriesKey.of("latency_ms", {"pod": "b"})
    await store.save_checkpoints(GROUP, [PartitionCheckpoint("samples", 0, 20, {kept: _state(kept, 20.0)})])
    # A member that lost the partition meanwhile saves what it had: neither its position nor its states count.
    stale = {kept: _state(kept, 10.0), only_in_stale: _state(only_in_stale, 10.0)}
    await store.save_checkpoints(GROUP, [PartitionCheckpoint("samples", 0, 10, stale)])
    assert await _load(store, [("samples", 0)]) == {("samples", 0): (20, _held({kept: _state(kept, 20.0)}))}


async def test_in_one_save_each_partition_is_judged_on_its_own_position(store: CheckpointStore) -> None:
    await store.save_checkpoints(
        GROUP,
        [PartitionCheckpoint("samples", 0, 50, {PLAIN: _state(PLAIN, 0.0)}), PartitionCheckpoint("samples", 1, 5, {})],
    )
    await store.save_checkpoints(
        GROUP,
        [
            PartitionCheckpoint("samples", 0, 40, {PLAIN: _state(PLAIN, 40.0)}),
            PartitionCheckpoint("samples", 1, 6, {PLAIN: _state(PLAIN, 6.0)}),
            PartitionCheckpoint("samples", 2, 0, {}),
        ],
    )
    assert await _load(store, [("samples", 0), ("samples", 1), ("samples", 2)]) == {
        ("samples", 0): (50, _held({PLAIN: _state(PLAIN, 0.0)})),
        ("samples", 1): (6, _held({PLAIN: _state(PLAIN, 6.0)})),
        ("samples", 2): (0, {}),
    }


async def test_only_the_partitions_asked_for_that_have_a_checkpoint_come_back(store: CheckpointStore) -> None:
    await store.save_checkpoints(
        GROUP,
        [
            PartitionCheckpoint("samples", 0, 10, {PLAIN: _state(PLAIN, 0.0)}),
            PartitionCheckpoint("samples", 1, 11, {PLAIN: _state(PLAIN, 1.0)}),
            # The same partition number of another topic is another partition.
            PartitionCheckpoint("other-samples", 0, 12, {PLAIN: _state(PLAIN, 2.0)}),
        ],
    )
    assert await _load(store, [("samples", 1), ("samples", 7), ("unknown", 0)]) == {
        ("samples", 1): (11, _held({PLAIN: _state(PLAIN, 1.0)}))
    }
    assert await _load(store, [("other-samples", 0)]) == {
        ("other-samples", 0): (12, _held({PLAIN: _state(PLAIN, 2.0)}))
    }
    assert await store.load_checkpoints(GROUP, []) == []


async def test_consumer_groups_are_kept_apart(store: CheckpointStore) -> None:
    await store.save_checkpoints("blue", [PartitionCheckpoint("samples", 0, 100, {PLAIN: _state(PLAIN, 100.0)})])
    # Behind blue's position, but blue's position is not this group's: it is kept.
    await store.save_checkpoints(
        "green", [PartitionCheckpoint("samples", 0, 5, {AWKWARD[0]: _state(AWKWARD[0], 5.0, live=False)})]
    )
    assert await _load(store, [("samples", 0)], group="blue") == {
        ("samples", 0): (100, _held({PLAIN: _state(PLAIN, 100.0)}))
    }
    assert await _load(store, [("samples", 0)], group="green") == {
        ("samples", 0): (5, _held({AWKWARD[0]: _state(AWKWARD[0], 5.0, live=False)}))
    }
    assert await _load(store, [("samples", 0)], group="red") == {}
