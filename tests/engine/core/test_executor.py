import pytest

from engine.core.actions.catalogue import ActionParams
from engine.core.actions.executor import ActionExecutor
from engine.core.memory import InMemoryLedger as MemoryLedger
from engine.domain.clock import FakeClock
from engine.domain.errors import ConflictError, NotFoundError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest, ActionStatus


class RecordingBackend:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[ActionParams] = []
        self.fail = fail

    async def execute(self, params: ActionParams) -> str:
        self.calls.append(params)
        if self.fail:
            raise TemporaryError("API server timed out")
        return "scaled"


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
    failing = ActionExecutor(MemoryLedger(), FakeClock(), {"scale_deployment": RecordingBackend(fail=True)})
    result = await failing.execute(_request(ActionMode.LIVE))
    assert (result.status, result.detail) == (ActionStatus.FAILED, "API server timed out")


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
