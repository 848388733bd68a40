import asyncio
import math
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy.exc import StatementError

from engine.adapters.store.sql_store import SqlStore
from engine.core.checkpoints import PartitionCheckpoint, SeriesState
from engine.core.detection import DetectorSlotState
from engine.domain.errors import ConfigurationError, NotFoundError
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionResult,
    ActionStatus,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
)
from tests.engine.factories import anomaly, incident


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url)
    yield opened
    await opened.close()


def _request(request_id: str = "act-1") -> ActionRequest:
    return ActionRequest.create(
        id=request_id,
        incident_id="inc-1",
        playbook="p",
        step=0,
        action="rollout_restart",
        params={"namespace": "serving", "deployment": "fraud"},
        mode=ActionMode.DRY_RUN,
        requested_at=5.0,
    )


async def test_incident_changes_build_state_and_timeline(store: SqlStore) -> None:
    opened = incident()
    await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0)))
    resolved = replace(opened, state=IncidentState.RESOLVED, resolved_at=1000.0)
    await store.apply_change(IncidentChange(IncidentChangeKind.RESOLVED, resolved, 1000.0))
    detail = await store.get_incident("inc-1")
    assert detail.incident.state is IncidentState.RESOLVED
    assert detail.incident.series == opened.series
    assert [entry.kind for entry in detail.timeline] == ["opened", "resolved"]
    assert detail.timeline[0].detail["score"] == 0.99
    assert [i.id for i in await store.list_incidents(state=IncidentState.RESOLVED)] == ["inc-1"]
    assert await store.list_incidents(state=IncidentState.OPEN) == []


async def test_a_batch_of_changes_is_stored_together_in_order(store: SqlStore) -> None:
    first, second = incident(id="inc-1", opened_at=100.0), incident(id="inc-2", opened_at=101.0)
    updated = replace(first, signal_count=2, peak_score=0.999, last_signal_at=110.0)
    await store.apply_changes(
        [
            IncidentChange(IncidentChangeKind.OPENED, first, 100.0, anomaly(100.0)),
            IncidentChange(IncidentChangeKind.OPENED, second, 101.0, anomaly(101.0)),
            # The same incident again in the same batch: its row, not a second one, takes the update.
            IncidentChange(IncidentChangeKind.UPDATED, updated, 110.0, anomaly(110.0)),
        ]
    )
    assert [i.id for i in await store.list_incidents()] == ["inc-2", "inc-1"]
    detail = await store.get_incident("inc-1")
    assert (detail.incident.signal_count, detail.incident.peak_score) == (2, 0.999)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated"]
    await store.apply_changes([])
    assert len(await store.list_incidents()) == 2


async def test_a_burst_larger_than_one_lookup_updates_every_incident_it_names(store: SqlStore) -> None:
    # More incidents than one query looks up at once: every one must be found again, none inserted twice.
    opened = [incident(id=f"inc-{i}", opened_at=100.0 + i) for i in range(1_200)]
    await store.apply_changes([IncidentChange(IncidentChangeKind.OPENED, i, i.opened_at) for i in opened])
    await store.decide_incident(
        "inc-7",
        allowed_from=frozenset({IncidentState.OPEN}),
        to=IncidentState.ACKNOWLEDGED,
        kind="acknowledged",
        by="oncall",
        comment="",
        at=2_000.0,
    )
    updates = [
        IncidentChange(IncidentChangeKind.UPDATED, replace(i, signal_count=5, last_signal_at=3_000.0), 3_000.0)
        for i in opened
    ]
    resolved = replace(opened[9], state=IncidentState.RESOLVED, resolved_at=3_001.0)
    await store.apply_changes([*updates, IncidentChange(IncidentChangeKind.RESOLVED, resolved, 3_001.0)])
    counts = await store.count_incidents_by_state()
    assert counts[IncidentState.OPEN] + counts[IncidentState.ACKNOWLEDGED] == 1_199
    assert counts[IncidentState.RESOLVED] == 1
    acknowledged = (await store.get_incident("inc-7")).incident
    # A signal updates the figures but leaves the state people gave it.
    assert (acknowledged.state, acknowledged.signal_count) == (IncidentState.ACKNOWLEDGED, 5)
    detail = await store.get_incident("inc-9")
    assert (detail.incident.state, detail.incident.resolved_at) == (IncidentState.RESOLVED, 3_001.0)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated", "resolved"]


async def test_a_batch_that_fails_stores_none_of_its_changes(store: SqlStore) -> None:
    good = IncidentChange(IncidentChangeKind.OPENED, incident(id="inc-1"), 100.0, anomaly(100.0))
    # A label value that cannot be written as JSON: the second row fails on its way to the database.
    unwritable = incident(id="inc-2", series=SeriesKey("latency", (("pod", cast(str, object())),)))
    with pytest.raises(StatementError):
        await store.apply_changes([good, IncidentChange(IncidentChangeKind.OPENED, unwritable, 101.0)])
    assert await store.list_incidents() == []


async def test_claim_is_exactly_once_and_survives_reopening(database_url: str) -> None:
    url = database_url
    first = await SqlStore.open(url)
    assert await first.claim(_request()) is True
    assert await first.claim(_request()) is False
    assert [(r.id, s) for r, s in await first.unfinished()] == [("act-1", ActionStatus.PENDING)]
    await first.complete(ActionResult(_request(), ActionStatus.DRY_RUN, "would restart", 6.0))
    await first.close()
    reopened = await SqlStore.open(url)
    assert await reopened.claim(_request()) is False
    assert await reopened.unfinished() == []
    [record] = await reopened.list_actions()
    assert (record.status, record.detail, record.finished_at) == ("dry-run", "would restart", 6.0)
    await reopened.close()


async def test_missing_incident_is_not_found(store: SqlStore) -> None:
    with pytest.raises(NotFoundError):
        await store.get_incident("nope")


async def test_dead_letters_keep_the_payload_and_reason(store: SqlStore) -> None:
    await store.dead_letter(source="kafka", reason="not JSON", payload=b"\x00garbage", received_at=1.0)
    assert await store.count_dead_letters() == 1


async def test_unusable_database_url_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot"):
        await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'missing-dir' / 'x.db'}")


async def test_two_stores_on_one_database_claim_a_request_once(database_url: str) -> None:
    # Two engine replicas, each with its own connection pool, racing for the same step.
    first, second = await SqlStore.open(database_url), await SqlStore.open(database_url)
    outcomes = await asyncio.gather(*(store.claim(_request()) for store in (first, second, first, second)))
    assert sorted(outcomes) == [False, False, False, True]
    await first.close()
    await second.close()


async def test_checkpointed_series_states_read_back_as_saved_even_with_infinities_and_nan(store: SqlStore) -> None:
    plain = SeriesKey.of("latency_ms", {"pod": "a"})
    unbounded = SeriesKey.of("latency_ms", {"pod": "b"})
    states = {
        plain: SeriesState(
            DetectorSlotState({"n": 3.0, "mean": 101.5, "table": [1.0, 2.5]}, {"last_fired": None}),
            incident(series=plain),
            (anomaly(100.0, series=plain),),
        ),
        # Some detectors keep unbounded extremes; they must not come back as null (orjson writes NaN and
        # infinities so).
        unbounded: SeriesState(DetectorSlotState({"low": math.inf, "high": -math.inf, "gap": math.nan}, {})),
    }
    await store.save_checkpoints("group", [PartitionCheckpoint("samples", 0, 42, states)])
    [loaded] = await store.load_checkpoints("group", [("samples", 0)])
    assert (loaded.topic, loaded.partition, loaded.offset) == ("samples", 0, 42)
    assert loaded.states[plain] == states[plain]
    restored = loaded.states[unbounded].detection.detector
    assert restored["low"] == math.inf
    assert restored["high"] == -math.inf
    assert math.isnan(restored["gap"])
