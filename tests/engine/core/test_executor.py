from engine.core.actions.catalogue import ActionParams
from engine.core.actions.executor import ActionExecutor
from engine.domain.clock import FakeClock
from engine.domain.errors import TemporaryError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus


class MemoryLedger:
    def __init__(self) -> None:
        self.claimed: set[str] = set()
        self.completed: list[ActionResult] = []

    async def claim(self, request: ActionRequest) -> bool:
        if request.id in self.claimed:
            return False
        self.claimed.add(request.id)
        return True

    async def complete(self, result: ActionResult) -> None:
        self.completed.append(result)


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
