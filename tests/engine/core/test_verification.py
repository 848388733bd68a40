"""Verify and undo, through the remediator as the pipeline drives it: observe samples, handle changes, settle."""

from __future__ import annotations

from typing import Any

import pytest

from engine.core.actions.executor import ActionExecutor
from engine.core.memory import InMemoryLedger as MemoryLedger
from engine.core.playbooks.guards import Policy, RunHistory
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import FakeClock
from engine.domain.events import ActionMode, ActionStatus, IncidentChange, IncidentChangeKind, MetricSample, SeriesKey
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


async def _run(playbook: Playbook, points: list[tuple[SeriesKey, float, float]], until: float) -> list[str]:
    ledger = MemoryLedger()
    remediator = Remediator(
        Planner([playbook], ActionMode.DRY_RUN), ActionExecutor(ledger, FakeClock(), {}), Policy(), RunHistory()
    )
    # Samples can reach the remediator before the action is decided: the pipeline's detection stage runs ahead.
    remediator.observe([MetricSample(series, at, value) for series, at, value in points])
    [started] = await remediator.handle(IncidentChange(IncidentChangeKind.OPENED, incident(opened_at=0.0), 0.0))
    assert started.status is ActionStatus.VERIFYING
    results = await remediator.settle(until)
    return [f"{r.status.value}: {r.detail}" for r in results]


VERIFY = {"condition": "value < 0.2", "within": "10m"}


async def test_recovery_within_the_window_completes_the_step() -> None:
    points = [(LATENCY, 60.0, 0.5), (LATENCY, 120.0, 0.15)]
    [done] = await _run(_playbook(VERIFY), points, until=130.0)
    assert done.startswith("dry-run: verified: value < 0.2 held for")
    assert "120s after" in done


async def test_no_recovery_undoes_the_step_and_escalates() -> None:
    points = [(LATENCY, at, 0.5) for at in range(60, 660, 60)]
    [undone] = await _run(_playbook(VERIFY), points, until=601.0)
    assert undone.startswith("undone: not verified: value < 0.2 never held within 600s")
    assert "would scale deployment serving/fraud back to its previous replica count" in undone
    assert undone.endswith("escalated to a human")


async def test_undecided_until_the_window_has_passed() -> None:
    assert await _run(_playbook(VERIFY), [(LATENCY, 60.0, 0.5)], until=599.0) == []


async def test_other_series_do_not_count() -> None:
    [failed] = await _run(_playbook(VERIFY), [(OTHER, 60.0, 0.01), (LATENCY, 60.0, 0.5)], until=700.0)
    assert failed.startswith("undone: not verified")


@pytest.mark.parametrize(("policy", "status"), [("fail", "undone"), ("pass", "dry-run")])
async def test_missing_data_follows_the_declared_policy(policy: str, status: str) -> None:
    [outcome] = await _run(_playbook(VERIFY | {"missing_data": policy}), [], until=601.0)
    assert outcome.startswith(f"{status}: no data within 600s (missing_data: {policy})")


async def test_a_step_that_cannot_be_undone_fails_and_escalates() -> None:
    [failed] = await _run(_playbook(VERIFY, action="rollout_restart"), [(LATENCY, 60.0, 0.9)], until=601.0)
    assert failed.startswith("failed: not verified")
    assert failed.endswith("not undone; escalated to a human")


async def test_undo_can_be_turned_off() -> None:
    [failed] = await _run(_playbook(VERIFY, undo=False), [(LATENCY, 60.0, 0.9)], until=601.0)
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
    remediator = Remediator(
        Planner([_approved_playbook()], ActionMode.DRY_RUN),
        ActionExecutor(MemoryLedger(), clock, {}),
        Policy(),
        RunHistory(),
    )
    [waiting] = await remediator.handle(IncidentChange(IncidentChangeKind.OPENED, incident(opened_at=0.0), 0.0))
    assert waiting.status is ActionStatus.AWAITING_APPROVAL
    # Recovery before the approval does not count: the verification window opens when the step runs.
    remediator.observe([MetricSample(LATENCY, 60.0, 0.1), MetricSample(LATENCY, 1500.0, 0.5)])
    assert await remediator.settle(1500.0) == []
    clock.advance(1500.0)
    approved = await remediator.decide(waiting.request.id, approve=True, by="alice")
    assert approved.status is ActionStatus.VERIFYING
    remediator.observe([MetricSample(LATENCY, 1560.0, 0.5), MetricSample(LATENCY, 1800.0, late_value)])
    [settled] = await remediator.settle(2101.0)
    assert f"{settled.status.value}: {settled.detail}".startswith(outcome)


async def test_a_rejected_step_is_not_verified() -> None:
    remediator = Remediator(
        Planner([_approved_playbook()], ActionMode.DRY_RUN),
        ActionExecutor(MemoryLedger(), FakeClock(), {}),
        Policy(),
        RunHistory(),
    )
    [waiting] = await remediator.handle(IncidentChange(IncidentChangeKind.OPENED, incident(opened_at=0.0), 0.0))
    rejected = await remediator.decide(waiting.request.id, approve=False, by="alice")
    assert rejected.status is ActionStatus.REJECTED
    assert await remediator.settle(10_000.0) == []
