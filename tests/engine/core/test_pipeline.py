from collections.abc import AsyncIterator, Sequence

import numpy as np

from detectors.base import BatchDetector, FloatArray, IntArray, State
from engine.adapters.store.sql_store import SqlStore
from engine.app.summary import RunSummary
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.playbooks.model import Playbook
from engine.domain.clock import FakeClock
from engine.domain.events import ActionStatus, IncidentState, MetricSample, SeriesKey
from tests.engine.core.remediating import remediator

HOT = SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": "fraud"})
CALM = SeriesKey.of("gpu_memory_used_ratio", {"namespace": "serving", "deployment": "ranker"})


class AboveTen(BatchDetector):
    """Scores 1 for values above 10: enough to drive the pipeline without a learning detector."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    def ensure_capacity(self, capacity: int) -> None:
        self._capacity = max(self._capacity, capacity)

    def update_batch(self, slots: IntArray, timestamps: FloatArray, values: FloatArray) -> FloatArray:
        return np.where(values > 10, 1.0, 0.0)

    def reset_slot(self, slot: int) -> None:
        return

    def snapshot_slot(self, slot: int) -> State:
        return {}

    def restore_slot(self, slot: int, state: State) -> None:
        return


class ListSource:
    def __init__(self, batches: Sequence[Sequence[MetricSample]]) -> None:
        self._batches = batches

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        for batch in self._batches:
            yield batch


def _batches() -> list[list[MetricSample]]:
    batches = []
    for minute in range(60):
        hot_value = 100.0 if 20 <= minute < 25 else 1.0
        batches.append([MetricSample(HOT, minute * 60.0, hot_value), MetricSample(CALM, minute * 60.0, 1.0)])
    return batches


PLAYBOOK = Playbook.model_validate(
    {
        "name": "restart",
        "triggers": [{"series": "gpu_memory_used_ratio"}],
        "steps": [
            {
                "action": "rollout_restart",
                "params": {"namespace": "serving", "deployment": "{{ incident.labels.deployment }}"},
            }
        ],
    }
)


async def test_pipeline_turns_an_episode_into_one_incident_one_action_and_a_resolution() -> None:
    store = await SqlStore.open("sqlite+aiosqlite:///:memory:")
    clock = FakeClock()
    summary = RunSummary()
    pipeline = Pipeline(
        source=ListSource(_batches()),
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(1), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=300, resolve_after_s=600)),
        remediator=remediator(store.ledger, [PLAYBOOK], clock=clock),
        store=store,
        observer=summary,
        channel_capacity=2,
    )
    await pipeline.run()

    assert summary.samples == 120
    assert summary.anomalies == 5
    [incident] = await store.list_incidents()
    assert incident.series == HOT
    assert incident.state is IncidentState.RESOLVED
    assert incident.opened_at == 21 * 60.0
    assert incident.signal_count == 5
    [action] = summary.actions
    assert action.status is ActionStatus.DRY_RUN
    assert action.detail == "would restart the pods of deployment serving/fraud (rolling)"
    detail = await store.get_incident(incident.id)
    assert [entry.kind for entry in detail.timeline] == ["opened", "updated", "updated", "updated", "resolved"]
    assert [record.status for record in detail.actions] == ["dry-run"]
    await store.close()
