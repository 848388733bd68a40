"""The executor on the action ledger: at most once, modes, approval, retries, and taking over what a crashed
replica left (its own steps at once after a restart, another's once the lease has run out)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from engine.core.actions.catalogue import ActionParams
from engine.core.actions.executor import CLAIM_LEASE_S, ActionBackend, ActionExecutor, RetryPolicy
from engine.core.actions.ledger import Lease
from engine.core.memory import InMemoryLedger as MemoryLedger
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.remediation import Remediator
from engine.core.playbooks.steps import PlannedStep
from engine.domain.clock import FakeClock
from engine.domain.errors import ConflictError, NotFoundError, PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus
from tests.engine.core.remediating import remediator


class RecordingBackend:
    """A backend that records its calls and the keys of the changes it made; it can fail on demand."""

    def __init__(
        self, fail: bool = False, temporary_failures: int = 0, permanent: bool = False, hang_s: float = 0.0
    ) -> None:
        self.calls: list[ActionParams] = []
        self.applied_keys: set[str] = set()
        self.fail = fail
        self.temporary_failures = temporary_failures
        self.permanent = permanent
        self.hang_s = hang_s

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        self.calls.append(params)
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        if self.permanent:
            raise PermanentError("forbidden: deployments.apps is not allowed")
        if self.fail:
            raise TemporaryError("API server timed out")
        if self.temporary_failures:
            self.temporary_failures -= 1
            raise TemporaryError("409 conflict")
        self.applied_keys.add(request.id)
        return "scaled"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        return "scaled back"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        return request.id in self.applied_keys


FAST_RETRY = RetryPolicy(attempts=3, first_backoff_s=0.0, max_backoff_s=0.0, timeout_s=0.2)
OWNER = "replica-a"


def _executor(
    ledger: MemoryLedger | None = None,
    clock: FakeClock | None = None,
    backends: Mapping[str, ActionBackend] | None = None,
    retry: RetryPolicy | None = None,
    owner: str = OWNER,
) -> ActionExecutor:
    return ActionExecutor(ledger or MemoryLedger(), clock or FakeClock(), backends or {}, retry, owner=owner)


def _request(mode: ActionMode, **params: object) -> ActionRequest:
    return ActionRequest.create(
        id="act-1",
        incident_id="inc-1",
        playbook="p",
        step=0,
        action="scale_deployment",
        params=params or {"namespace": "serving", "deployment": "fraud", "step": 2},
        mode=mode,
        requested_at=0.0,
    )


async def test_dry_run_records_exactly_what_would_be_called_and_calls_nothing() -> None:
    backend = RecordingBackend()
    executor = _executor(backends={"scale_deployment": backend})
    result = await executor.execute(_request(ActionMode.DRY_RUN))
    assert result.status is ActionStatus.DRY_RUN
    assert result.detail == "would scale deployment serving/fraud by +2 replicas (bounds 1..20)"
    assert backend.calls == []


async def test_a_request_runs_at_most_once() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    executor = _executor(ledger, backends={"scale_deployment": backend})
    first = await executor.execute(_request(ActionMode.LIVE))
    second = await executor.execute(_request(ActionMode.LIVE))
    assert (first.status, second.status) == (ActionStatus.SUCCEEDED, ActionStatus.DUPLICATE)
    assert len(backend.calls) == 1
    assert await ledger.status("act-1") is ActionStatus.SUCCEEDED


async def test_invalid_parameters_fail_without_calling_the_backend() -> None:
    backend = RecordingBackend()
    executor = _executor(backends={"scale_deployment": backend})
    result = await executor.execute(_request(ActionMode.LIVE, namespace="serving", deployment="fraud"))
    assert result.status is ActionStatus.FAILED
    assert "exactly one of 'replicas' or 'step'" in result.detail
    assert backend.calls == []


async def test_live_mode_without_a_backend_or_with_a_failing_one_fails_cleanly() -> None:
    missing = await _executor().execute(_request(ActionMode.LIVE))
    assert missing.status is ActionStatus.FAILED
    assert "no live backend" in missing.detail
    failing = _executor(backends={"scale_deployment": RecordingBackend(fail=True)}, retry=FAST_RETRY)
    result = await failing.execute(_request(ActionMode.LIVE))
    assert (result.status, result.detail) == (ActionStatus.FAILED, "API server timed out; escalated to a human")


def _waiting(mode: ActionMode = ActionMode.LIVE) -> ActionRequest:
    return ActionRequest.create(
        id="act-approve",
        incident_id="inc-1",
        playbook="p",
        step=0,
        action="rollout_restart",
        params={"namespace": "serving", "deployment": "fraud"},
        mode=mode,
        requested_at=0.0,
        approval_timeout_s=600.0,
    )


async def test_a_step_needing_approval_waits_and_runs_once_approved() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    executor = _executor(ledger, backends={"rollout_restart": backend})
    waiting = await executor.execute(_waiting())
    assert waiting.status is ActionStatus.AWAITING_APPROVAL
    assert "restart the pods of deployment serving/fraud" in waiting.detail
    assert backend.calls == []
    done = await executor.decide("act-approve", approve=True, by="alice", comment="go")
    assert (done.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)
    with pytest.raises(ConflictError):
        await executor.decide("act-approve", approve=True, by="bob")
    assert len(backend.calls) == 1


async def test_a_rejected_step_never_runs() -> None:
    backend = RecordingBackend()
    executor = _executor(backends={"rollout_restart": backend})
    await executor.execute(_waiting())
    rejected = await executor.decide("act-approve", approve=False, by="alice", comment="not now")
    assert (rejected.status, rejected.detail) == (ActionStatus.REJECTED, "rejected by alice (not now)")
    with pytest.raises(ConflictError):
        await executor.decide("act-approve", approve=True, by="alice")
    assert backend.calls == []


async def test_unapproved_steps_expire_when_their_window_ends() -> None:
    clock = FakeClock()
    executor = _executor(clock=clock)
    await executor.execute(_waiting())
    clock.advance(599)
    assert await executor.expire_overdue() == []
    clock.advance(2)
    [expired] = await executor.expire_overdue()
    assert expired.status is ActionStatus.EXPIRED
    with pytest.raises(ConflictError):
        await executor.decide("act-approve", approve=True, by="late")


async def test_deciding_on_an_unknown_step_is_not_found() -> None:
    with pytest.raises(NotFoundError):
        await _executor().decide("nope", approve=True, by="x")


async def test_temporary_errors_are_retried_with_backoff() -> None:
    backend = RecordingBackend(temporary_failures=2)
    executor = _executor(backends={"scale_deployment": backend}, retry=FAST_RETRY)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 3)


async def test_retries_give_up_after_the_last_attempt() -> None:
    backend = RecordingBackend(fail=True)
    executor = _executor(backends={"scale_deployment": backend}, retry=FAST_RETRY)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.FAILED, 3)


async def test_permanent_errors_are_not_retried() -> None:
    backend = RecordingBackend(permanent=True)
    executor = _executor(backends={"scale_deployment": backend}, retry=FAST_RETRY)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.FAILED, 1)
    assert result.detail.startswith("forbidden")


async def test_a_call_that_hangs_times_out_and_counts_as_temporary() -> None:
    backend = RecordingBackend(hang_s=5.0)
    policy = RetryPolicy(attempts=2, first_backoff_s=0.0, max_backoff_s=0.0, timeout_s=0.05)
    executor = _executor(backends={"scale_deployment": backend}, retry=policy)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.FAILED, 2)
    assert "no answer within 0.05s" in result.detail


class CrashAfterCall(MemoryLedger):
    """Dies between "action sent" and "step recorded", like a process killed at the worst moment. The ledger is the
    store, which outlives the process: ``crashing`` is turned off for what runs after the restart."""

    def __init__(self) -> None:
        super().__init__()
        self.crashing = True

    async def complete(self, result: ActionResult, *, verify_started_at: float | None = None) -> None:
        if self.crashing:
            raise SystemExit("killed")
        await super().complete(result, verify_started_at=verify_started_at)


def _recovering(
    ledger: MemoryLedger, backend: RecordingBackend, *, clock: FakeClock | None = None, owner: str = OWNER
) -> Remediator:
    """The replica after a restart: a new process (nothing in memory) on the same ledger."""
    backends = {"scale_deployment": backend, "rollout_restart": backend}
    return remediator(ledger, clock=clock, backends=backends, mode=ActionMode.LIVE, owner=owner)


async def _crash_mid_call(ledger: CrashAfterCall, backend: RecordingBackend, clock: FakeClock) -> ActionExecutor:
    executor = _executor(ledger, clock, {"scale_deployment": backend})
    with pytest.raises(SystemExit):
        await executor.execute(_request(ActionMode.LIVE))
    assert len(backend.calls) == 1
    assert await ledger.status("act-1") is ActionStatus.RUNNING
    ledger.crashing = False
    return executor


async def test_a_crash_between_sending_and_recording_is_reconciled_not_repeated() -> None:
    backend, ledger = RecordingBackend(), CrashAfterCall()
    await _crash_mid_call(ledger, backend, FakeClock())
    [recovered] = await _recovering(ledger, backend).recover()
    assert recovered.status is ActionStatus.SUCCEEDED
    assert "found in place after a restart" in recovered.detail
    assert len(backend.calls) == 1
    assert await ledger.status("act-1") is ActionStatus.SUCCEEDED


async def test_a_crash_before_the_call_runs_the_step_after_restart() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    # Claimed, then the process died before admitting it.
    assert await ledger.claim(PlannedStep(_request(ActionMode.LIVE), Guards()), Lease(OWNER, CLAIM_LEASE_S))
    [recovered] = await _recovering(ledger, backend).recover()
    assert (recovered.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)


async def test_a_running_step_whose_change_is_missing_is_called_again() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    await ledger.claim(PlannedStep(_request(ActionMode.LIVE), Guards()), Lease(OWNER, CLAIM_LEASE_S))
    await ledger.transition(
        "act-1", ActionStatus.PENDING, ActionStatus.RUNNING, "calling", "engine", at=0.0, lease=Lease(OWNER, 1000.0)
    )
    [recovered] = await _recovering(ledger, backend).recover()
    assert (recovered.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)


@pytest.mark.parametrize("restarted", [True, False], ids=["same-replica-restarted", "another-replica"])
async def test_a_step_needing_approval_left_pending_by_a_crash_still_waits_for_a_person(restarted: bool) -> None:
    backend = RecordingBackend()
    ledger, clock = MemoryLedger(), FakeClock()
    # Claimed, never admitted: the process died before the approval rule was applied.
    assert await ledger.claim(PlannedStep(_waiting(), Guards()), Lease(OWNER, CLAIM_LEASE_S))
    if restarted:
        recovering = _recovering(ledger, backend, clock=clock)
        recovered = await recovering.recover()
    else:
        recovering = _recovering(ledger, backend, clock=clock, owner="replica-b")
        clock.advance(CLAIM_LEASE_S + 1)
        recovered = await recovering.run_due(10)
    assert [r.status for r in recovered] == [ActionStatus.AWAITING_APPROVAL]
    assert backend.calls == []
    assert await ledger.status("act-approve") is ActionStatus.AWAITING_APPROVAL
    done = await recovering.decide("act-approve", approve=True, by="alice")
    assert (done.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)


async def test_a_recovered_step_goes_through_its_guards_again() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    guards = Guards.model_validate({"cooldown": "1h"})
    recovering = _recovering(ledger, backend)
    # An earlier run on the same target, counted by the ledger.
    earlier = PlannedStep(_step("act-0", "inc-0", at=0.0, mode=ActionMode.LIVE).request, guards)
    await ledger.plan([earlier], at=0.0)
    assert [r.status for r in await recovering.run_due(1)] == [ActionStatus.SUCCEEDED]
    # Then a step on the same target is claimed and the process dies before admitting it.
    late = PlannedStep(_step("act-1", "inc-1", at=60.0, mode=ActionMode.LIVE).request, guards)
    assert await ledger.claim(late, Lease(OWNER, CLAIM_LEASE_S))
    [recovered] = await recovering.recover()
    assert (recovered.status, recovered.effects["guard"]) == (ActionStatus.SKIPPED, "cooldown")
    assert len(backend.calls) == 1


def _step(
    id: str, incident_id: str, *, at: float, deployment: str = "fraud", mode: ActionMode = ActionMode.DRY_RUN
) -> PlannedStep:
    request = ActionRequest.create(
        id=id,
        incident_id=incident_id,
        playbook="p",
        step=0,
        action="scale_deployment",
        params={"namespace": "serving", "deployment": deployment, "step": 1},
        mode=mode,
        requested_at=at,
    )
    return PlannedStep(request, Guards())


async def test_steps_on_one_target_are_handed_out_one_at_a_time_in_order() -> None:
    ledger, clock = MemoryLedger(), FakeClock()
    await ledger.plan([_step("act-2", "inc-2", at=1.0), _step("act-1", "inc-1", at=0.0)], at=1.0)
    executor = _executor(ledger, clock)
    [claimed] = await executor.claim_due(10)
    assert claimed.step.request.id == "act-1"
    # Nor does another replica get the second while the first is unfinished.
    assert await _executor(ledger, clock, owner="replica-b").claim_due(10) == []
    done = await executor.run_claimed(claimed)
    assert done is not None
    assert done.status is ActionStatus.DRY_RUN
    assert [c.step.request.id for c in await executor.claim_due(10)] == ["act-2"]


async def test_steps_on_different_targets_are_handed_out_together() -> None:
    ledger = MemoryLedger()
    steps = [_step("act-1", "inc-1", at=0.0), _step("act-2", "inc-2", at=1.0, deployment="ranker")]
    await ledger.plan(steps, at=1.0)
    claimed = await _executor(ledger).claim_due(10)
    assert sorted(c.step.request.id for c in claimed) == ["act-1", "act-2"]


async def test_a_running_step_of_a_dead_replica_is_taken_over_once_its_lease_has_run_out() -> None:
    backend, ledger, clock = RecordingBackend(), CrashAfterCall(), FakeClock()
    dead = await _crash_mid_call(ledger, backend, clock)
    other = _recovering(ledger, backend, clock=clock, owner="replica-b")
    # The lease of the replica that was calling is still live: nobody else touches the step.
    assert await other.run_due(10) == []
    assert await other.recover() == []
    clock.advance(dead.run_lease_s)
    assert await other.run_due(10) == []
    clock.advance(1.0)
    [taken] = await other.run_due(10)
    assert taken.status is ActionStatus.SUCCEEDED
    assert "found in place after a restart" in taken.detail
    assert len(backend.calls) == 1


async def test_a_pending_step_claimed_by_a_dead_replica_is_run_once_its_claim_has_run_out() -> None:
    backend, ledger, clock = RecordingBackend(), MemoryLedger(), FakeClock()
    assert await ledger.claim(PlannedStep(_request(ActionMode.LIVE), Guards()), Lease(OWNER, CLAIM_LEASE_S))
    other = _recovering(ledger, backend, clock=clock, owner="replica-b")
    clock.advance(CLAIM_LEASE_S)
    assert await other.run_due(10) == []
    clock.advance(1.0)
    [taken] = await other.run_due(10)
    assert (taken.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)
