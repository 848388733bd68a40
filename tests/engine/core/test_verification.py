"""Verify and undo, through the remediator as the pipeline drives it: observe samples, store and run the steps a
change calls for, settle. A step is undone only on evidence: a verification that cannot be judged (no samples, or
samples seen only from part-way through the window) leaves the step to a person."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from engine.core.actions.catalogue import ActionParams
from engine.core.memory import InMemoryLedger
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.verification import PendingVerification, Verifier, Verify
from engine.domain.clock import FakeClock
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionResult,
    ActionStatus,
    IncidentChange,
    IncidentChangeKind,
    MetricSample,
    SeriesKey,
)
from tests.engine.core.remediating import handle, remediator
from tests.engine.factories import LATENCY, incident

OTHER = SeriesKey.of(LATENCY.name, {"model": "ranker", "namespace": "serving"})


def _playbook(verify: dict[str, Any], *, action: str = "scale_deployment", undo: bool = True) -> Playbook:
    params: dict[str, Any] = {"namespace": "serving", "deployment": "fraud"}
    if action == "scale_deployment":
        params["step"] = 2
    return Playbook.model_validate(
        {
            "name": "scale",
            "triggers": [{"series": LATENCY.name}],
            "steps": [{"action": action, "params": params, "verify": verify, "undo": undo}],
        }
    )


class RecordingBackend:
    """A live backend that records what it changed and what it undid."""

    def __init__(self) -> None:
        self.executed: list[str] = []
        self.undone: list[str] = []

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        self.executed.append(request.id)
        return "scaled"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        self.undone.append(request.id)
        return "scaled back"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        return request.id in self.executed


OPENED = IncidentChange(IncidentChangeKind.OPENED, incident(opened_at=0.0), 0.0)


async def _settled(
    playbook: Playbook,
    points: Sequence[tuple[SeriesKey, float, float]],
    until: float,
    *,
    mode: ActionMode = ActionMode.DRY_RUN,
    backend: RecordingBackend | None = None,
) -> list[ActionResult]:
    ledger = InMemoryLedger()
    backends = {} if backend is None else {"scale_deployment": backend}
    steps = remediator(ledger, [playbook], mode=mode, backends=backends)
    # Samples can reach the remediator before the action is decided: the pipeline's detection stage runs ahead.
    steps.observe([MetricSample(series, at, value) for series, at, value in points])
    [started] = await handle(steps, ledger, OPENED)
    assert started.status is ActionStatus.VERIFYING
    results = await steps.settle(until)
    for result in results:
        assert await ledger.status(result.request.id) is result.status
    return results


async def _run(playbook: Playbook, points: Sequence[tuple[SeriesKey, float, float]], until: float) -> list[str]:
    return [f"{r.status.value}: {r.detail}" for r in await _settled(playbook, points, until)]


VERIFY = {"condition": "value < 0.2", "within": "10m"}


async def test_recovery_within_the_window_completes_the_step() -> None:
    points = [(LATENCY, 60.0, 0.5), (LATENCY, 120.0, 0.15)]
    [done] = await _run(_playbook(VERIFY), points, until=130.0)
    assert done.startswith("dry-run: verified: value < 0.2 held for")
    assert "120s after" in done


async def test_no_recovery_undoes_the_step_and_escalates() -> None:
    points = [(LATENCY, at, 0.5) for at in range(0, 660, 60)]
    [undone] = await _run(_playbook(VERIFY), points, until=601.0)
    assert undone.startswith("undone: not verified: value < 0.2 never held within 600s")
    assert "would scale deployment serving/fraud back to its previous replica count" in undone
    assert undone.endswith("escalated to a human")


async def test_undecided_until_the_window_has_passed() -> None:
    assert await _run(_playbook(VERIFY), [(LATENCY, 60.0, 0.5)], until=599.0) == []


async def test_other_series_do_not_count() -> None:
    [failed] = await _run(
        _playbook(VERIFY), [(OTHER, 60.0, 0.01), (LATENCY, 0.0, 0.5), (LATENCY, 60.0, 0.5)], until=700.0
    )
    assert failed.startswith("undone: not verified")


@pytest.mark.parametrize(("policy", "status"), [("fail", "failed"), ("pass", "dry-run")])
async def test_missing_data_follows_the_declared_policy(policy: str, status: str) -> None:
    [outcome] = await _run(_playbook(VERIFY | {"missing_data": policy}), [], until=601.0)
    assert outcome.startswith(f"{status}: no data within 600s (missing_data: {policy})")


async def test_a_step_that_cannot_be_undone_fails_and_escalates() -> None:
    [failed] = await _run(_playbook(VERIFY, action="rollout_restart"), [(LATENCY, 0.0, 0.9)], until=601.0)
    assert failed.startswith("failed: not verified")
    assert failed.endswith("not undone; escalated to a human")


async def test_undo_can_be_turned_off() -> None:
    [failed] = await _run(_playbook(VERIFY, undo=False), [(LATENCY, 0.0, 0.9)], until=601.0)
    assert failed.startswith("failed: not verified")


async def test_a_named_series_with_matchers_can_be_verified_instead() -> None:
    spec = {"condition": "value < 0.2", "within": "10m", "series": LATENCY.name, "matchers": ['model="ranker"']}
    [done] = await _run(_playbook(spec), [(OTHER, 60.0, 0.1)], until=100.0)
    assert done.startswith("dry-run: verified")


def _approved_playbook() -> Playbook:
    playbook = _playbook(VERIFY).model_dump(by_alias=True)
    playbook["steps"][0]["approval"] = "required"
    return Playbook.model_validate(playbook)


@pytest.mark.parametrize(
    ("late_value", "outcome"),
    [(0.1, "dry-run: verified: value < 0.2 held"), (0.5, "undone: not verified: value < 0.2 never held")],
)
async def test_a_step_that_waits_for_approval_is_verified_from_the_moment_it_ran(
    late_value: float, outcome: str
) -> None:
    clock = FakeClock(0.0)
    ledger = InMemoryLedger()
    steps = remediator(ledger, [_approved_playbook()], clock=clock)
    [waiting] = await handle(steps, ledger, OPENED)
    assert waiting.status is ActionStatus.AWAITING_APPROVAL
    # Recovery before the approval does not count: the verification window opens when the step runs.
    steps.observe([MetricSample(LATENCY, 60.0, 0.1), MetricSample(LATENCY, 1500.0, 0.5)])
    assert await steps.settle(1500.0) == []
    clock.advance(1500.0)
    approved = await steps.decide(waiting.request.id, approve=True, by="alice")
    assert approved.status is ActionStatus.VERIFYING
    steps.observe([MetricSample(LATENCY, 1560.0, 0.5), MetricSample(LATENCY, 1800.0, late_value)])
    [settled] = await steps.settle(2101.0)
    assert f"{settled.status.value}: {settled.detail}".startswith(outcome)


async def test_a_rejected_step_is_not_verified() -> None:
    ledger = InMemoryLedger()
    steps = remediator(ledger, [_approved_playbook()])
    [waiting] = await handle(steps, ledger, OPENED)
    rejected = await steps.decide(waiting.request.id, approve=False, by="alice")
    assert rejected.status is ActionStatus.REJECTED
    assert await steps.settle(10_000.0) == []


async def test_a_live_step_that_did_not_recover_is_undone_by_its_backend() -> None:
    backend = RecordingBackend()
    points = [(LATENCY, at, 0.5) for at in range(0, 660, 60)]
    [undone] = await _settled(_playbook(VERIFY), points, 601.0, mode=ActionMode.LIVE, backend=backend)
    assert undone.status is ActionStatus.UNDONE
    assert backend.undone == backend.executed == [undone.request.id]


@pytest.mark.parametrize(
    "points",
    [
        [],
        [(LATENCY, -60.0, 0.5)],  # the series was seen, but not within the window
        [(OTHER, 60.0, 0.5)],  # only another series of the same metric
    ],
    ids=["no-samples", "none-in-the-window", "other-series-only"],
)
async def test_a_verification_without_samples_in_its_window_is_not_undone(
    points: list[tuple[SeriesKey, float, float]],
) -> None:
    backend = RecordingBackend()
    [failed] = await _settled(_playbook(VERIFY), points, 601.0, mode=ActionMode.LIVE, backend=backend)
    assert failed.status is ActionStatus.FAILED
    assert failed.detail.endswith("not undone; escalated to a human")
    assert backend.executed == [failed.request.id]
    assert backend.undone == []


async def test_samples_seen_only_from_part_way_through_the_window_cannot_fail_a_step() -> None:
    backend = RecordingBackend()
    points = [(LATENCY, at, 0.5) for at in range(120, 660, 60)]
    [failed] = await _settled(_playbook(VERIFY), points, 601.0, mode=ActionMode.LIVE, backend=backend)
    assert failed.status is ActionStatus.FAILED
    assert failed.detail.startswith("cannot judge")
    assert backend.undone == []


def test_a_replica_whose_partition_moved_away_leaves_the_verification_to_the_new_owner() -> None:
    request = ActionRequest.create(
        id="act-1",
        incident_id="inc-1",
        playbook="p",
        step=0,
        action="rollout_restart",
        params={"namespace": "serving", "deployment": "fraud"},
        mode=ActionMode.DRY_RUN,
        requested_at=10.0,
    )
    pending = PendingVerification(request, Verify(condition="value < 1", within=5.0), LATENCY, {}, 10.0)
    verifier = Verifier(sees_every_series=False)
    verifier.watch({LATENCY.name}, retention_s=5.0)
    # This replica saw the series until its partition moved (before the window), then only other series' time.
    verifier.observe([MetricSample(LATENCY, 0.0, 9.0)])
    verifier.track([pending])
    assert verifier.settle(100.0) == []
    # The owner, which sees the series past the deadline, judges it.
    owner = Verifier(sees_every_series=False)
    owner.watch({LATENCY.name}, retention_s=5.0)
    owner.observe([MetricSample(LATENCY, t, 9.0) for t in (0.0, 12.0, 16.0)])
    owner.track([pending])
    [outcome] = owner.settle(16.0)
    assert (outcome.passed, outcome.judged) == (False, True)


def test_same_labels_watch_another_metric_of_the_incident_s_own_workload() -> None:
    spec = Verify(condition="value < 0.01", series="model_request_error_ratio", same_labels=["model"], within=600)
    alias = SeriesKey.of("mlflow_model_alias_version", {"model": "fraud", "alias": "champion"})
    assert spec.watches(SeriesKey.of("model_request_error_ratio", {"model": "fraud", "pod": "a"}), alias)
    assert not spec.watches(SeriesKey.of("model_request_error_ratio", {"model": "recommender"}), alias)
    assert not spec.watches(SeriesKey.of("model_request_error_ratio", {}), alias)
    # Without same_labels, every series of that name is watched, as before.
    assert Verify(condition="value < 1", series="model_request_error_ratio", within=60).watches(
        SeriesKey.of("model_request_error_ratio", {"model": "recommender"}), alias
    )
