import asyncio

import pytest

from engine.core.actions.catalogue import ActionParams
from engine.core.actions.executor import ActionExecutor, RetryPolicy
from engine.core.memory import InMemoryLedger as MemoryLedger
from engine.domain.clock import FakeClock
from engine.domain.errors import ConflictError, NotFoundError, PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus


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
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": backend})
    result = await executor.execute(_request(ActionMode.DRY_RUN))
    assert result.status is ActionStatus.DRY_RUN
    assert result.detail == "would scale deployment serving/fraud by +2 replicas (bounds 1..20)"
    assert backend.calls == []


async def test_a_request_runs_at_most_once() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    executor = ActionExecutor(ledger, FakeClock(), {"scale_deployment": backend})
    first = await executor.execute(_request(ActionMode.LIVE))
    second = await executor.execute(_request(ActionMode.LIVE))
    assert (first.status, second.status) == (ActionStatus.SUCCEEDED, ActionStatus.DUPLICATE)
    assert len(backend.calls) == 1
    assert len(ledger.completed) == 1


async def test_invalid_parameters_fail_without_calling_the_backend() -> None:
    backend = RecordingBackend()
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": backend})
    result = await executor.execute(_request(ActionMode.LIVE, namespace="serving", deployment="fraud"))
    assert result.status is ActionStatus.FAILED
    assert "exactly one of 'replicas' or 'step'" in result.detail
    assert backend.calls == []


async def test_live_mode_without_a_backend_or_with_a_failing_one_fails_cleanly() -> None:
    missing = await ActionExecutor(MemoryLedger(), FakeClock(), {}).execute(_request(ActionMode.LIVE))
    assert missing.status is ActionStatus.FAILED
    assert "no live backend" in missing.detail
    failing = ActionExecutor(
        MemoryLedger(), FakeClock(), {"scale_deployment": RecordingBackend(fail=True)}, retry=FAST_RETRY
    )
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
    executor = ActionExecutor(ledger, FakeClock(), {"rollout_restart": backend})
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
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"rollout_restart": backend})
    await executor.execute(_waiting())
    rejected = await executor.decide("act-approve", approve=False, by="alice", comment="not now")
    assert (rejected.status, rejected.detail) == (ActionStatus.REJECTED, "rejected by alice (not now)")
    with pytest.raises(ConflictError):
        await executor.decide("act-approve", approve=True, by="alice")
    assert backend.calls == []


async def test_unapproved_steps_expire_when_their_window_ends() -> None:
    clock = FakeClock()
    executor = ActionExecutor(MemoryLedger(), clock, {})
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
        await ActionExecutor(MemoryLedger(), FakeClock(), {}).decide("nope", approve=True, by="x")


async def test_temporary_errors_are_retried_with_backoff() -> None:
    backend = RecordingBackend(temporary_failures=2)
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": backend}, retry=FAST_RETRY)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 3)


async def test_retries_give_up_after_the_last_attempt() -> None:
    backend = RecordingBackend(fail=True)
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": backend}, retry=FAST_RETRY)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.FAILED, 3)


async def test_permanent_errors_are_not_retried() -> None:
    backend = RecordingBackend(permanent=True)
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": backend}, retry=FAST_RETRY)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.FAILED, 1)
    assert result.detail.startswith("forbidden")


async def test_a_call_that_hangs_times_out_and_counts_as_temporary() -> None:
    backend = RecordingBackend(hang_s=5.0)
    policy = RetryPolicy(attempts=2, first_backoff_s=0.0, max_backoff_s=0.0, timeout_s=0.05)
    executor = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": backend}, retry=policy)
    result = await executor.execute(_request(ActionMode.LIVE))
    assert (result.status, len(backend.calls)) == (ActionStatus.FAILED, 2)
    assert "no answer within 0.05s" in result.detail


class CrashAfterCall(MemoryLedger):
    """Dies between "action sent" and "step recorded", like a process killed at the worst moment."""

    async def complete(self, result: ActionResult) -> None:
        raise SystemExit("killed")


async def test_a_crash_between_sending_and_recording_is_reconciled_not_repeated() -> None:
    backend = RecordingBackend()
    crashing = CrashAfterCall()
    with pytest.raises(SystemExit):
        await ActionExecutor(crashing, FakeClock(), {"scale_deployment": backend}).execute(_request(ActionMode.LIVE))
    assert len(backend.calls) == 1
    assert crashing.status["act-1"] is ActionStatus.RUNNING
    # After the restart: a new executor on the same ledger (the store survives the process).
    ledger = MemoryLedger()
    ledger.requests, ledger.status = crashing.requests, crashing.status
    [recovered] = await ActionExecutor(ledger, FakeClock(), {"scale_deployment": backend}).recover()
    assert recovered.status is ActionStatus.SUCCEEDED
    assert "found in place after a restart" in recovered.detail
    assert len(backend.calls) == 1
    assert ledger.status["act-1"] is ActionStatus.SUCCEEDED


async def test_a_crash_before_the_call_runs_the_step_after_restart() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    await ledger.claim(_request(ActionMode.LIVE))  # claimed, then the process died
    [recovered] = await ActionExecutor(ledger, FakeClock(), {"scale_deployment": backend}).recover()
    assert (recovered.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)


async def test_a_running_step_whose_change_is_missing_is_called_again() -> None:
    backend = RecordingBackend()
    ledger = MemoryLedger()
    await ledger.claim(_request(ActionMode.LIVE))
    await ledger.transition("act-1", ActionStatus.PENDING, ActionStatus.RUNNING, "calling", "engine")
    [recovered] = await ActionExecutor(ledger, FakeClock(), {"scale_deployment": backend}).recover()
    assert (recovered.status, len(backend.calls)) == (ActionStatus.SUCCEEDED, 1)
