"""The contract of the action ledger port (``engine.core.actions.ledger.ActionLedger``), checked against every
implementation: in memory, and the SQL ledger on SQLite and on PostgreSQL.

Everything here is read back through the port itself, so an implementation that stores a step differently from
the others (a verdict, a lease, a field of the planned step) fails the same test the others pass.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.ledger import ActionLedger, Admission, ClaimedStep, Lease
from engine.core.memory import InMemoryLedger
from engine.core.playbooks.guards import Guards, PastRun
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import PendingVerification, Verify
from engine.domain.errors import NotFoundError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus, SeriesKey
from engine.domain.promql_strings import quote
from tests.support.databases import empty_database

T0 = 1_000.0
A, B = "replica-a", "replica-b"
HOUR = 3_600.0


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ActionLedger]:
    if request.param == "memory":
        yield InMemoryLedger()
        return
    store = await SqlStore.open(await empty_database(request.param, tmp_path))
    yield store.ledger
    await store.close()


def _request(
    id: str,
    *,
    at: float = T0,
    incident: str = "inc-1",
    playbook: str = "restart",
    step: int = 0,
    deployment: str = "fraud",
    action: str = "rollout_restart",
    params: dict[str, Any] | None = None,
    approval_timeout_s: float | None = None,
) -> ActionRequest:
    return ActionRequest.create(
        id=id,
        incident_id=incident,
        playbook=playbook,
        step=step,
        action=action,
        params={"namespace": "serving", "deployment": deployment} if params is None else params,
        mode=ActionMode.DRY_RUN,
        requested_at=at,
        approval_timeout_s=approval_timeout_s,
    )


def _step(id: str, *, verify: bool = False, failure: str | None = None, **request: Any) -> PlannedStep:
    planned = _request(id, **request)
    verification = None
    if verify:
        spec = Verify(condition="value < 0.5", within=300)
        verification = PendingVerification(planned, spec, SeriesKey.of("latency_p99", {}), {}, planned.requested_at)
    return PlannedStep(planned, Guards(), verification, failure)


def _verdict(status: ActionStatus, *, counts: bool = False, at: float = T0, **fields: Any) -> Admission:
    return Admission(status, f"decided: {status.value}", counts=counts, at=at, **fields)


class Decisions:
    """A ``decide`` that gives one verdict and remembers the runs it was shown (one list per call)."""

    def __init__(self, verdict: Admission) -> None:
        self.verdict = verdict
        self.shown: list[list[PastRun]] = []

    def __call__(self, runs: Sequence[PastRun]) -> Admission:
        self.shown.append(list(runs))
        return self.verdict


async def _claim_one(ledger: ActionLedger, owner: str = A, *, now: float = T0, until: float = T0 + 60) -> ClaimedStep:
    [claimed] = await ledger.claim_due(lease=Lease(owner, until), now=now, limit=1)
    return claimed


async def _claimed_ids(
    ledger: ActionLedger, owner: str = A, *, now: float = T0, limit: int = 10, reclaim_own: bool = False
) -> list[str]:
    claimed = await ledger.claim_due(lease=Lease(owner, now + 60), now=now, limit=limit, reclaim_own=reclaim_own)
    return [c.step.request.id for c in claimed]


async def _admitted(ledger: ActionLedger, step: PlannedStep, verdict: Admission, *, owner: str = A) -> None:
    """Plan ``step``, claim it and store ``verdict`` as its admission."""
    await ledger.plan([step], at=step.request.requested_at)
    assert await ledger.claim(step, Lease(owner, T0 + 60)) is False
    assert [c.step.request.id for c in await ledger.claim_due(lease=Lease(owner, T0 + 60), now=T0, limit=1)] == [
        step.request.id
    ]
    assert await ledger.admit(step.request.id, owner=owner, since=None, decide=Decisions(verdict)) == verdict


def _result(step: PlannedStep, status: ActionStatus, at: float = T0 + 1) -> ActionResult:
    return ActionResult(step.request, status, f"ended {status.value}", at)


# -- plan --------------------------------------------------------------------------------------------------------


async def test_planned_steps_are_pending_and_load_as_planned(ledger: ActionLedger) -> None:
    first, second = _step("act-1"), _step("act-2", deployment="ranker", verify=True)
    await ledger.plan([first, second], at=T0)
    assert [await ledger.status("act-1"), await ledger.status("act-2")] == [ActionStatus.PENDING] * 2
    assert await ledger.load("act-1") == first
    assert await ledger.load("act-2") == second


async def test_an_unknown_id_has_no_status_and_no_step(ledger: ActionLedger) -> None:
    assert await ledger.status("nope") is None
    assert await ledger.load("nope") is None


async def test_planning_again_leaves_the_stored_step_as_it_is(ledger: ActionLedger) -> None:
    first = _step("act-1", deployment="fraud")
    await ledger.plan([first], at=T0)
    # The same id planned again (after a crash, or by another replica) with other parameters, even as failed.
    await ledger.plan([_step("act-1", deployment="other")], at=T0 + 5)
    await ledger.plan([_step("act-1", failure="not planned: boom")], at=T0 + 6)
    # Twice in one batch: the first one is stored.
    await ledger.plan([_step("act-2", deployment="a"), _step("act-2", deployment="b")], at=T0 + 6)
    assert await ledger.load("act-2") == _step("act-2", deployment="a")
    assert await ledger.load("act-1") == first
    assert await ledger.status("act-1") is ActionStatus.PENDING
    # Nor does planning again set a step that went on back to pending.
    await _claim_one(ledger)
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(_verdict(ActionStatus.SKIPPED)))
    await ledger.plan([first], at=T0 + 7)
    assert await ledger.status("act-1") is ActionStatus.SKIPPED
    assert await _claimed_ids(ledger, reclaim_own=True) == ["act-2"]


async def test_a_step_that_could_not_be_planned_is_stored_failed_with_its_reason(ledger: ActionLedger) -> None:
    failed = _step("act-1", failure="not planned: template error in params.deployment")
    await ledger.plan([failed, _step("act-2", deployment="ranker")], at=T0)
    assert await ledger.status("act-1") is ActionStatus.FAILED
    loaded = await ledger.load("act-1")
    assert loaded is not None
    assert loaded.failure == "not planned: template error in params.deployment"
    # It is never carried out.
    assert await _claimed_ids(ledger) == ["act-2"]


# -- claim -------------------------------------------------------------------------------------------------------


async def test_claim_stores_a_new_step_pending_under_the_lease_and_refuses_a_stored_id(ledger: ActionLedger) -> None:
    step = _step("act-1")
    assert await ledger.claim(step, Lease(A, T0 + 60)) is True
    assert await ledger.status("act-1") is ActionStatus.PENDING
    assert await ledger.load("act-1") == step
    assert await ledger.claim(_step("act-1", deployment="other"), Lease(B, T0 + 60)) is False
    assert await ledger.load("act-1") == step
    # Leased to A: another worker leaves it alone until the lease runs out; A may admit it at once.
    assert await _claimed_ids(ledger, B, now=T0 + 30) == []
    assert await ledger.admit("act-1", owner=B, since=None, decide=Decisions(_verdict(ActionStatus.RUNNING))) is None
    admission = _verdict(ActionStatus.DRY_RUN)
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(admission)) == admission


async def test_a_step_that_could_not_be_planned_is_stored_failed_when_claimed_too(ledger: ActionLedger) -> None:
    failed = _step("act-1", failure="not planned: template error")
    await ledger.claim(failed, Lease(A, T0 + 60))
    assert await ledger.status("act-1") is ActionStatus.FAILED
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(_verdict(ActionStatus.RUNNING))) is None
    assert await _claimed_ids(ledger, A, now=T0 + 61) == []


async def test_claim_refuses_an_id_that_was_planned(ledger: ActionLedger) -> None:
    await ledger.plan([_step("act-1")], at=T0)
    assert await ledger.claim(_step("act-1"), Lease(A, T0 + 60)) is False
    # The planned step stays free for whoever claims it due.
    assert await _claimed_ids(ledger, B) == ["act-1"]


async def test_of_replicas_claiming_one_step_at_once_exactly_one_gets_it(ledger: ActionLedger) -> None:
    outcomes = await asyncio.gather(*(ledger.claim(_step("act-1"), Lease(owner, T0 + 60)) for owner in (A, B, A, B)))
    assert sorted(outcomes) == [False, False, False, True]


# -- claim_due ---------------------------------------------------------------------------------------------------


async def test_due_steps_are_claimed_oldest_first_with_their_step_and_status(ledger: ActionLedger) -> None:
    newer = _step("act-new", at=T0 + 10, deployment="ranker", verify=True)
    older = _step("act-old", at=T0, deployment="fraud", incident="inc-2")
    await ledger.plan([newer], at=T0 + 10)
    await ledger.plan([older], at=T0)
    [claimed] = await ledger.claim_due(lease=Lease(A, T0 + 60), now=T0 + 20, limit=1)
    assert claimed == ClaimedStep(older, ActionStatus.PENDING)
    assert await ledger.claim_due(lease=Lease(A, T0 + 60), now=T0 + 20, limit=5) == [
        ClaimedStep(newer, ActionStatus.PENDING)
    ]


async def test_a_live_lease_keeps_other_workers_off_until_it_runs_out(ledger: ActionLedger) -> None:
    await ledger.plan([_step("act-1")], at=T0)
    assert await _claimed_ids(ledger, A, now=T0) == ["act-1"]  # leased to A until T0 + 60
    assert await _claimed_ids(ledger, B, now=T0 + 59) == []
    # A restarted A (same identity) takes it back at once, but only when it asks to.
    assert await _claimed_ids(ledger, A, now=T0 + 30) == []
    assert await _claimed_ids(ledger, B, now=T0 + 30, reclaim_own=True) == []
    assert await _claimed_ids(ledger, A, now=T0 + 30, reclaim_own=True) == ["act-1"]  # now leased until T0 + 90
    assert await _claimed_ids(ledger, B, now=T0 + 89) == []
    assert await _claimed_ids(ledger, B, now=T0 + 91) == ["act-1"]
    # The lease taken last is the one that counts: B may admit it, A no longer.
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(_verdict(ActionStatus.RUNNING))) is None
    assert await ledger.admit("act-1", owner=B, since=None, decide=Decisions(_verdict(ActionStatus.SKIPPED)))


async def test_one_step_per_target_at_a_time_in_the_order_they_were_planned(ledger: ActionLedger) -> None:
    first = _step("act-1", incident="inc-1", at=T0)
    second = _step("act-2", incident="inc-2", at=T0 + 1)  # same deployment, another incident
    elsewhere = _step("act-3", incident="inc-3", at=T0 + 2, deployment="ranker")
    await ledger.plan([first, second, elsewhere], at=T0 + 2)
    assert await _claimed_ids(ledger, A) == ["act-1", "act-3"]
    # While the first is leased (being changed), nobody takes the second step on the same target.
    assert await _claimed_ids(ledger, B, now=T0 + 10) == []
    await ledger.complete(_result(first, ActionStatus.DRY_RUN))
    assert await _claimed_ids(ledger, B, now=T0 + 10) == ["act-2"]


async def test_a_later_step_of_a_playbook_run_waits_for_the_earlier_ones(ledger: ActionLedger) -> None:
    steps = [_step(f"act-{i}", step=i, deployment=f"d{i}") for i in range(3)]
    # Planned out of order, on different targets: still step 0 first.
    await ledger.plan([steps[2], steps[1]], at=T0)
    await ledger.plan([steps[0]], at=T0)
    assert await _claimed_ids(ledger) == ["act-0"]
    await ledger.complete(_result(steps[0], ActionStatus.DRY_RUN))
    assert await _claimed_ids(ledger, now=T0 + 61) == ["act-1"]
    # Another incident's run of the same playbook does not wait for this one.
    await ledger.plan([_step("other-0", incident="inc-2", deployment="x")], at=T0)
    assert await _claimed_ids(ledger, B, now=T0 + 62) == ["other-0"]


async def test_finished_and_waiting_steps_are_never_claimed(ledger: ActionLedger) -> None:
    ended = {
        "act-skipped": _verdict(ActionStatus.SKIPPED),
        "act-waiting": _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR),
        "act-dry": _verdict(ActionStatus.DRY_RUN, counts=True),
    }
    for number, (id, verdict) in enumerate(ended.items()):
        await _admitted(ledger, _step(id, deployment=f"d{number}"), verdict)
    await ledger.plan([_step("act-failed", failure="not planned")], at=T0)
    assert await _claimed_ids(ledger, now=T0 + 2 * HOUR, reclaim_own=True) == []


async def test_a_running_step_whose_worker_died_is_claimed_as_running(ledger: ActionLedger) -> None:
    step = _step("act-1")
    await _admitted(ledger, step, _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    assert await _claimed_ids(ledger, B, now=T0 + 299) == []
    [claimed] = await ledger.claim_due(lease=Lease(B, T0 + 400), now=T0 + 301, limit=5)
    assert claimed == ClaimedStep(step, ActionStatus.RUNNING)


async def test_of_replicas_claiming_due_steps_at_once_none_gets_a_step_twice(ledger: ActionLedger) -> None:
    await ledger.plan([_step(f"act-{i}", incident=f"inc-{i}", deployment=f"d{i}") for i in range(6)], at=T0)
    batches = await asyncio.gather(
        *(ledger.claim_due(lease=Lease(owner, T0 + 60), now=T0, limit=2) for owner in ("r1", "r2", "r3", "r4"))
    )
    ids = [c.step.request.id for batch in batches for c in batch]
    assert sorted(ids) == [f"act-{i}" for i in range(6)]


# -- admit -------------------------------------------------------------------------------------------------------


async def test_admit_decides_nothing_unless_the_step_is_pending_and_leased_to_the_owner(
    ledger: ActionLedger,
) -> None:
    decide = Decisions(_verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    assert await ledger.admit("nope", owner=A, since=None, decide=decide) is None
    await ledger.plan([_step("act-1")], at=T0)
    assert await ledger.admit("act-1", owner=A, since=None, decide=decide) is None  # planned, not leased
    await _claim_one(ledger, A)
    assert await ledger.admit("act-1", owner=B, since=None, decide=decide) is None  # leased to another
    assert decide.shown == []
    assert await ledger.status("act-1") is ActionStatus.PENDING
    assert await ledger.admit("act-1", owner=A, since=None, decide=decide) == decide.verdict
    assert await ledger.status("act-1") is ActionStatus.RUNNING
    # Admitted once: no second admission, even by the lease holder.
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(_verdict(ActionStatus.SKIPPED))) is None
    assert await ledger.status("act-1") is ActionStatus.RUNNING


async def test_admit_shows_decide_exactly_the_counted_runs_since_the_look_back(ledger: ActionLedger) -> None:
    counted = [
        _step("run-10", at=10.0, incident="i1", deployment="a"),
        _step("run-20", at=20.0, incident="i2", deployment="b", playbook="scale"),
        _step(
            "run-30",
            at=30.0,
            incident="i3",
            action="mlflow_rollback_alias",
            params={"model": "fraud"},
            playbook="rollback",
        ),
    ]
    for step in counted:
        await _admitted(ledger, step, _verdict(ActionStatus.DRY_RUN, counts=True))
    # Not counted: refused by a guard, or never admitted (still pending, failed to plan).
    await _admitted(ledger, _step("skipped-25", at=25.0, incident="i4", deployment="c"), _verdict(ActionStatus.SKIPPED))
    await ledger.plan([_step("failed-26", at=26.0, incident="i5", failure="not planned")], at=26.0)
    await ledger.plan([_step("pending-27", at=27.0, incident="i6", deployment="e")], at=27.0)
    step = _step("act-now", at=40.0, incident="i7", deployment="f")
    await ledger.plan([step], at=40.0)
    assert await _claimed_ids(ledger, A, now=T0, limit=10) == ["pending-27", "act-now"]

    decide = Decisions(_verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    assert await ledger.admit("act-now", owner=A, since=20.0, decide=decide) == decide.verdict
    [shown] = decide.shown
    assert sorted(shown, key=lambda run: run.at) == [
        PastRun("scale", "rollout_restart", "deployment:serving/b", "serving", 20.0),
        PastRun("rollback", "mlflow_rollback_alias", "model:fraud", None, 30.0),
    ]
    # No look-back: decide is shown no runs at all.
    none = Decisions(_verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    assert await ledger.admit("pending-27", owner=A, since=None, decide=none) == none.verdict
    assert none.shown == [[]]


async def test_a_step_admitted_as_counting_is_counted_by_later_admissions(ledger: ActionLedger) -> None:
    # Counted from its admission on, whatever becomes of it later.
    first = _step("act-1", at=100.0, incident="i1")
    await _admitted(ledger, first, _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    await ledger.complete(_result(first, ActionStatus.FAILED))
    waiting = _step("act-2", at=110.0, incident="i2", deployment="b")
    await _admitted(ledger, waiting, _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR))
    await ledger.plan([_step("act-3", at=120.0, incident="i3", deployment="c")], at=120.0)
    await _claim_one(ledger)
    decide = Decisions(_verdict(ActionStatus.SKIPPED))
    await ledger.admit("act-3", owner=A, since=0.0, decide=decide)
    assert sorted(run.at for run in decide.shown[0]) == [100.0, 110.0]


async def test_the_verdict_is_stored_with_its_approval_window_and_lease(ledger: ActionLedger) -> None:
    waiting = _step("act-wait", deployment="a", approval_timeout_s=HOUR)
    await _admitted(ledger, waiting, _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR))
    assert await ledger.status("act-wait") is ActionStatus.AWAITING_APPROVAL
    assert await ledger.awaiting_approval(T0 + HOUR + 1) == [waiting]
    assert await ledger.awaiting_approval(T0 + HOUR) == []

    running = _step("act-run", deployment="b")
    await _admitted(ledger, running, _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 500))
    assert await ledger.status("act-run") is ActionStatus.RUNNING
    assert await _claimed_ids(ledger, B, now=T0 + 499) == []
    assert await _claimed_ids(ledger, A, now=T0 + 499, reclaim_own=True) == ["act-run"]
    assert await ledger.awaiting_approval(T0 + 10 * HOUR) == [waiting]


async def test_of_two_admissions_at_once_the_second_sees_the_first_s_run(ledger: ActionLedger) -> None:
    # A blast-radius limit of one run: two replicas admitting two steps at once must not both go ahead.
    await ledger.plan([_step("act-1", incident="i1", deployment="a")], at=T0)
    await ledger.plan([_step("act-2", incident="i2", deployment="b")], at=T0)
    assert await _claimed_ids(ledger, A, limit=1) == ["act-1"]
    assert await _claimed_ids(ledger, B, limit=1) == ["act-2"]

    def at_most_one(runs: Sequence[PastRun]) -> Admission:
        if runs:
            return _verdict(ActionStatus.SKIPPED)
        return _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300)

    verdicts = await asyncio.gather(
        ledger.admit("act-1", owner=A, since=0.0, decide=at_most_one),
        ledger.admit("act-2", owner=B, since=0.0, decide=at_most_one),
    )
    assert sorted(v.status for v in verdicts if v is not None) == [ActionStatus.RUNNING, ActionStatus.SKIPPED]
    assert {await ledger.status("act-1"), await ledger.status("act-2")} == {ActionStatus.RUNNING, ActionStatus.SKIPPED}


# -- complete and transition ---------------------------------------------------------------------------------------


async def test_complete_records_the_outcome_and_releases_the_lease(ledger: ActionLedger) -> None:
    step = _step("act-1")
    await _admitted(ledger, step, _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 500))
    # A new state rather than an outcome: the step is free for any worker at once.
    await ledger.complete(_result(step, ActionStatus.RUNNING))
    assert await ledger.status("act-1") is ActionStatus.RUNNING
    assert await _claimed_ids(ledger, B, now=T0 + 10) == ["act-1"]
    await ledger.complete(_result(step, ActionStatus.SUCCEEDED))
    assert await ledger.status("act-1") is ActionStatus.SUCCEEDED
    assert await _claimed_ids(ledger, B, now=T0 + 1_000, reclaim_own=True) == []


async def test_completing_a_step_that_was_never_stored_is_not_found(ledger: ActionLedger) -> None:
    with pytest.raises(NotFoundError):
        await ledger.complete(_result(_step("nope"), ActionStatus.SUCCEEDED))
    assert await ledger.status("nope") is None


async def test_a_transition_happens_only_from_the_expected_state(ledger: ActionLedger) -> None:
    step = _step("act-1", approval_timeout_s=HOUR)
    assert not await ledger.transition(
        "nope", ActionStatus.AWAITING_APPROVAL, ActionStatus.RUNNING, "approved", "alice", at=T0
    )
    await ledger.plan([step], at=T0)
    assert not await ledger.transition(
        "act-1", ActionStatus.AWAITING_APPROVAL, ActionStatus.RUNNING, "approved", "alice", at=T0
    )
    assert await ledger.status("act-1") is ActionStatus.PENDING
    await _claim_one(ledger)
    verdict = _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR)
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(verdict))
    assert await ledger.transition(
        "act-1", ActionStatus.AWAITING_APPROVAL, ActionStatus.REJECTED, "rejected", "alice", at=T0 + 5
    )
    assert await ledger.status("act-1") is ActionStatus.REJECTED
    assert await ledger.awaiting_approval(T0 + 10 * HOUR) == []
    # Decided once: a second decision finds it no longer waiting.
    assert not await ledger.transition(
        "act-1", ActionStatus.AWAITING_APPROVAL, ActionStatus.RUNNING, "approved", "bob", at=T0 + 6
    )
    assert await ledger.status("act-1") is ActionStatus.REJECTED


async def test_of_two_decisions_at_once_exactly_one_is_taken(ledger: ActionLedger) -> None:
    step = _step("act-1", approval_timeout_s=HOUR)
    await _admitted(ledger, step, _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR))
    taken = await asyncio.gather(
        ledger.transition(
            "act-1",
            ActionStatus.AWAITING_APPROVAL,
            ActionStatus.RUNNING,
            "approved",
            "alice",
            at=T0 + 1,
            lease=Lease(A, T0 + 300),
        ),
        ledger.transition("act-1", ActionStatus.AWAITING_APPROVAL, ActionStatus.REJECTED, "rejected", "bob", at=T0 + 1),
    )
    assert sorted(taken) == [False, True]
    assert await ledger.status("act-1") is (ActionStatus.RUNNING if taken[0] else ActionStatus.REJECTED)


async def test_a_transition_takes_the_lease_it_is_given_and_clears_it_otherwise(ledger: ActionLedger) -> None:
    step = _step("act-1", approval_timeout_s=HOUR)
    await _admitted(ledger, step, _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR))
    # Approved: running under the approver's lease, which keeps other workers off until it runs out.
    assert await ledger.transition(
        "act-1",
        ActionStatus.AWAITING_APPROVAL,
        ActionStatus.RUNNING,
        "approved by alice",
        "alice",
        at=T0 + 10,
        lease=Lease(A, T0 + 300),
    )
    assert await _claimed_ids(ledger, B, now=T0 + 299) == []
    assert await _claimed_ids(ledger, A, now=T0 + 299, reclaim_own=True) == ["act-1"]
    # A transition without a lease leaves the step free for any worker at once.
    assert await ledger.transition(
        "act-1", ActionStatus.RUNNING, ActionStatus.UNDOING, "undoing", "engine", at=T0 + 300
    )
    [claimed] = await ledger.claim_due(lease=Lease(B, T0 + 600), now=T0 + 301, limit=5)
    assert claimed == ClaimedStep(step, ActionStatus.UNDOING)


async def test_an_undo_taken_over_from_a_dead_worker_is_claimed_as_undoing(ledger: ActionLedger) -> None:
    step = _step("act-1", verify=True)
    await _admitted(ledger, step, _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    await ledger.complete(_result(step, ActionStatus.VERIFYING), verify_started_at=T0)
    assert await ledger.transition(
        "act-1",
        ActionStatus.VERIFYING,
        ActionStatus.UNDOING,
        "verification failed; undoing",
        "engine",
        at=T0 + 400,
        lease=Lease(A, T0 + 700),
    )
    assert await ledger.verifying() == []
    assert await _claimed_ids(ledger, B, now=T0 + 699) == []
    [claimed] = await ledger.claim_due(lease=Lease(B, T0 + 1_000), now=T0 + 701, limit=5)
    assert claimed == ClaimedStep(step, ActionStatus.UNDOING)
    await ledger.complete(_result(step, ActionStatus.UNDONE, at=T0 + 702))
    assert await ledger.status("act-1") is ActionStatus.UNDONE
    assert await _claimed_ids(ledger, B, now=T0 + 2_000, reclaim_own=True) == []


# -- load: the planned step as it was planned ----------------------------------------------------------------------

# Label values with what a text format must escape: quotes, backslashes, newlines, and characters beyond ASCII.
AWKWARD = ["plain", 'say "hi"', "back\\slash", "line\nbreak", "end\\", "ünïcode ✓", "tab\tand\r\n"]


def _everything(awkward: str) -> PlannedStep:
    request = ActionRequest.create(
        id="act-everything",
        incident_id="inc-9",
        playbook="latency-scale-out",
        step=2,
        action="scale_deployment",
        params={"namespace": "serving", "deployment": "fraud-detector", "step": 2, "max_replicas": 8},
        mode=ActionMode.LIVE,
        requested_at=1_750_000_000.123456,
        approval_timeout_s=900.0,
        explanation={"trigger": {"series": "latency_p99"}, "incident": {"peak_score": 0.999, "labels": [awkward]}},
    )
    guards = Guards.model_validate(
        {
            "cooldown": "10m",
            "budget": {"runs": 2, "window": "1h"},
            "allow": {"namespaces": ["serving"], "targets": ["deployment:serving/*"]},
        }
    )
    spec = Verify.model_validate(
        {
            "condition": "value < 0.2",
            "series": "latency_p99",
            "within": "15m",
            "missing_data": "pass",
        }
    )
    series = SeriesKey.of("latency_p99", {"deployment": "fraud-detector", "pod": awkward})
    context = {"threshold": 0.2, "incident": {"labels": {"pod": awkward}}, "values": [1, 2.5, None, True]}
    verification = PendingVerification(request, spec, series, context, 1_750_000_000.123456, undo=False)
    return PlannedStep(request, guards, verification)


@pytest.mark.parametrize("awkward", AWKWARD)
async def test_load_gives_back_everything_a_step_was_planned_with(ledger: ActionLedger, awkward: str) -> None:
    step = _everything(awkward)
    await ledger.plan([step], at=T0)
    loaded = await ledger.load(step.request.id)
    assert loaded == step
    assert loaded is not None
    assert loaded.request.approval_timeout_s == 900.0
    assert (loaded.target, loaded.namespace) == ("deployment:serving/fraud-detector", "serving")
    assert loaded.guards.model_fields_set == step.guards.model_fields_set


# Matcher values a playbook can write, as PromQL string literals (quotes, backslashes and line feeds escaped).
MATCHED = ["plain", 'say "hi"', "back\\slash", "line\nbreak", "ünïcode ✓", "tab\tand\u200bzero width"]


@pytest.mark.parametrize("awkward", MATCHED)
async def test_a_verification_s_label_matchers_load_as_planned(ledger: ActionLedger, awkward: str) -> None:
    step = _everything(awkward)
    assert step.verification is not None
    spec = Verify.model_validate({"condition": "value < 0.2", "within": "15m", "matchers": [f"pod={quote(awkward)}"]})
    assert [(m.label, m.value) for m in spec.matchers] == [("pod", awkward)]
    planned = replace(step, verification=replace(step.verification, spec=spec))
    await ledger.plan([planned], at=T0)
    assert await ledger.load(planned.request.id) == planned


async def test_non_finite_numbers_in_a_verification_s_context_load_as_planned(ledger: ActionLedger) -> None:
    step = _step("act-1", verify=True)
    assert step.verification is not None
    context = {"peak": math.inf, "floor": -math.inf, "missing": math.nan}
    planned = replace(step, verification=replace(step.verification, context=context))
    await ledger.plan([planned], at=T0)
    loaded = await ledger.load("act-1")
    assert loaded is not None
    assert loaded.verification is not None
    got = loaded.verification.context
    assert (got["peak"], got["floor"]) == (math.inf, -math.inf)
    assert math.isnan(got["missing"])


async def test_steps_waiting_for_approval_come_back_with_their_approval_timeout(ledger: ActionLedger) -> None:
    soon = _step("act-soon", deployment="a", approval_timeout_s=60.0, verify=True)
    late = _step("act-late", deployment="b", approval_timeout_s=HOUR, incident="inc-2")
    await _admitted(ledger, soon, _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + 60))
    await _admitted(ledger, late, _verdict(ActionStatus.AWAITING_APPROVAL, counts=True, approval_due_at=T0 + HOUR))
    assert await ledger.awaiting_approval(T0 + 60) == []
    assert await ledger.awaiting_approval(T0 + 61) == [soon]
    both = await ledger.awaiting_approval(T0 + HOUR + 1)
    assert sorted(both, key=lambda s: s.request.id) == [late, soon]
    assert [s.request.approval_timeout_s for s in sorted(both, key=lambda s: s.request.id)] == [HOUR, 60.0]


# -- verifications ---------------------------------------------------------------------------------------------------


async def test_verifying_lists_each_verification_with_the_moment_its_window_opened(ledger: ActionLedger) -> None:
    verified = _step("act-1", verify=True, deployment="a")
    unverified = _step("act-2", deployment="b")
    for step in (verified, unverified):
        await _admitted(ledger, step, _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300))
    assert await ledger.verifying() == []
    await ledger.complete(_result(verified, ActionStatus.VERIFYING), verify_started_at=T0 + 42)
    await ledger.complete(_result(unverified, ActionStatus.SUCCEEDED))
    assert verified.verification is not None
    assert await ledger.verifying() == [replace(verified.verification, started_at=T0 + 42)]
    assert await ledger.status("act-1") is ActionStatus.VERIFYING
    # Closed: no longer listed.
    assert await ledger.transition(
        "act-1", ActionStatus.VERIFYING, ActionStatus.SUCCEEDED, "verified", "engine", at=T0 + 400
    )
    assert await ledger.verifying() == []


async def test_unrun_verifications_reach_back_to_the_earliest_unrun_step_s_planning(ledger: ActionLedger) -> None:
    assert await ledger.unrun_verifications_since() is None
    await ledger.plan([_step("plain", at=10.0, deployment="a", incident="i1")], at=10.0)
    assert await ledger.unrun_verifications_since() is None
    early = _step("early", at=30.0, deployment="b", incident="i2", verify=True)
    await ledger.plan([early, _step("late", at=50.0, deployment="c", incident="i3", verify=True)], at=50.0)
    await ledger.plan([_step("broken", at=5.0, incident="i4", verify=True, failure="not planned")], at=5.0)
    assert await ledger.unrun_verifications_since() == 30.0
    # Running (its worker may die and another run it again) is still unrun.
    assert await _claimed_ids(ledger, limit=10) == ["plain", "early", "late"]
    verdict = _verdict(ActionStatus.RUNNING, counts=True, lease_until=T0 + 300)
    assert await ledger.admit("early", owner=A, since=None, decide=Decisions(verdict))
    assert await ledger.unrun_verifications_since() == 30.0
    await ledger.complete(_result(early, ActionStatus.VERIFYING), verify_started_at=30.0)
    assert await ledger.unrun_verifications_since() == 50.0


async def test_admission_effects_are_given_back_to_the_caller(ledger: ActionLedger) -> None:
    await ledger.plan([_step("act-1")], at=T0)
    await _claim_one(ledger)
    verdict = _verdict(ActionStatus.SKIPPED, effects=MappingProxyType({"guard": "cooldown", "escalated": False}))
    assert await ledger.admit("act-1", owner=A, since=None, decide=Decisions(verdict)) == verdict
    assert await ledger.status("act-1") is ActionStatus.SKIPPED
