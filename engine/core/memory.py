"""In-memory implementations of the store ports, for playbook tests and unit tests: same contract, no database."""

from __future__ import annotations

from collections.abc import Sequence

from engine.domain.events import ActionRequest, ActionResult, ActionStatus, IncidentChange


class InMemoryLedger:
    """The action ledger port in memory (one process only; the SQL store is the shared, durable one)."""

    def __init__(self) -> None:
        self.requests: dict[str, ActionRequest] = {}
        self.status: dict[str, ActionStatus | None] = {}
        self.due: dict[str, float] = {}
        self.completed: list[ActionResult] = []

    async def claim(self, request: ActionRequest) -> bool:
        if request.id in self.requests:
            return False
        self.requests[request.id] = request
        self.status[request.id] = ActionStatus.PENDING
        return True

    async def complete(self, result: ActionResult) -> None:
        self.status[result.request.id] = result.status
        if result.status is ActionStatus.AWAITING_APPROVAL:
            self.due[result.request.id] = result.finished_at + (result.request.approval_timeout_s or 0.0)
        else:
            self.completed.append(result)

    async def transition(
        self, request_id: str, expected: ActionStatus, new: ActionStatus, detail: str, by: str
    ) -> bool:
        if self.status.get(request_id) is not expected:
            return False
        self.status[request_id] = new
        return True

    async def load(self, request_id: str) -> ActionRequest | None:
        return self.requests.get(request_id)

    async def awaiting_approval(self, due_before: float) -> list[ActionRequest]:
        return [
            self.requests[request_id]
            for request_id, status in self.status.items()
            if status is ActionStatus.AWAITING_APPROVAL and self.due[request_id] < due_before
        ]

    async def unfinished(self) -> list[tuple[ActionRequest, ActionStatus]]:
        return [
            (self.requests[request_id], status)
            for request_id, status in self.status.items()
            if status in (ActionStatus.PENDING, ActionStatus.RUNNING)
        ]


class InMemoryIncidentStore:
    """Keeps every incident change in a list."""

    def __init__(self) -> None:
        self.changes: list[IncidentChange] = []

    async def apply_changes(self, changes: Sequence[IncidentChange]) -> None:
        self.changes.extend(changes)
