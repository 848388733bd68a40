"""The action ledger on SQLite and PostgreSQL: one row per step, the single source of truth for remediation.

Claims and admissions run one at a time across every replica: on PostgreSQL under a transaction-scoped advisory
lock (they are short and rare next to ingestion, so one lock beats row locks that could still let two replicas
admit two steps of one target, or pass one blast-radius limit twice); on SQLite, whose writers already take turns,
in the store's write turn (SQLite serves one engine process). Guards count what the rows say, so every replica,
and every restart, sees the same history.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import replace
from typing import Any, cast

from sqlalchemy import Table, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from engine.adapters.store.resilience import Patience, patient
from engine.adapters.store.tables import ActionRow
from engine.core.actions.ledger import (
    UNFINISHED,
    Admission,
    ClaimedStep,
    Decide,
    Lease,
    QueuedStep,
    choose_due,
)
from engine.core.playbooks.guards import PastRun
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import PendingVerification
from engine.domain.errors import NotFoundError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus

_ACTIONS = cast(Table, ActionRow.__table__)
# Any constant both replicas agree on: the advisory lock under which claims and admissions take turns.
_LEDGER_LOCK = text("SELECT pg_advisory_xact_lock(4242001)")
_UNFINISHED = [status.value for status in UNFINISHED]
_OPEN_ENDED = {*UNFINISHED, ActionStatus.AWAITING_APPROVAL, ActionStatus.VERIFYING}

Sessions = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class SqlActionLedger:
    """Every method waits out an outage of the database (``patience``, shared with the store). Each is safe to run
    again after a commit whose answer was lost: a second ``plan`` or ``complete`` changes nothing, and a repeated
    ``claim``, ``claim_due``, ``admit`` or ``transition`` finds the step already moved and answers as if another
    worker had it, so the step waits for its lease to run out and is carried on from the state it was left in: later,
    never twice."""

    def __init__(self, begin: Sessions, read: Sessions, dialect: str, patience: Patience) -> None:
        self._begin = begin
        self._read = read
        self._postgres = dialect == "postgresql"
        self.patience = patience

    @asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[AsyncSession]:
        """A transaction that no other claim or admission (of any replica) runs beside."""
        async with self._begin() as session:
            if self._postgres:
                await session.execute(_LEDGER_LOCK)
            yield session

    @patient("storing planned steps")
    async def plan(self, steps: Sequence[PlannedStep], *, at: float) -> None:
        async with self._begin() as session:
            await insert_planned(session, steps, at=at, postgres=self._postgres)

    @patient("claiming a step")
    async def claim(self, step: PlannedStep, lease: Lease) -> bool:
        async with self._begin() as session:
            values = _row_values(step, at=lease.until) | {"lease_owner": lease.owner, "lease_until": lease.until}
            statement = _insert(self._postgres).values(values).on_conflict_do_nothing().returning(_ACTIONS.c.id)
            return (await session.execute(statement)).first() is not None

    @patient("claiming due steps")
    async def claim_due(self, *, lease: Lease, now: float, limit: int, reclaim_own: bool = False) -> list[ClaimedStep]:
        async with self._exclusive() as session:
            rows = await session.execute(
                select(
                    _ACTIONS.c.id,
                    _ACTIONS.c.incident_id,
                    _ACTIONS.c.playbook,
                    _ACTIONS.c.step,
                    _ACTIONS.c.target,
                    _ACTIONS.c.status,
                    _ACTIONS.c.requested_at,
                    _ACTIONS.c.lease_owner,
                    _ACTIONS.c.lease_until,
                ).where(_ACTIONS.c.status.in_(_UNFINISHED))
            )
            queued = [
                QueuedStep(
                    id,
                    incident,
                    playbook,
                    step,
                    target or f"step:{id}",
                    ActionStatus(status),
                    requested_at,
                    None if owner is None or until is None else Lease(owner, until),
                )
                for id, incident, playbook, step, target, status, requested_at, owner, until in rows
            ]
            chosen = choose_due(queued, owner=lease.owner, now=now, limit=limit, reclaim_own=reclaim_own)
            if not chosen:
                return []
            await session.execute(
                update(_ACTIONS)
                .where(_ACTIONS.c.id.in_(chosen))
                .values(lease_owner=lease.owner, lease_until=lease.until)
            )
            found = {row.id: row for row in await session.scalars(select(ActionRow).where(ActionRow.id.in_(chosen)))}
            return [ClaimedStep(_step(found[id]), ActionStatus(found[id].status or "pending")) for id in chosen]

    @patient("admitting a step")
    async def admit(self, request_id: str, *, owner: str, since: float | None, decide: Decide) -> Admission | None:
        async with self._exclusive() as session:
            row = await session.get(ActionRow, request_id, with_for_update=self._postgres)
            if row is None or row.status != ActionStatus.PENDING.value or row.lease_owner != owner:
                return None
            runs: list[PastRun] = []
            if since is not None:
                counted = await session.execute(
                    select(
                        _ACTIONS.c.playbook,
                        _ACTIONS.c.action,
                        _ACTIONS.c.target,
                        _ACTIONS.c.namespace,
                        _ACTIONS.c.requested_at,
                    ).where(_ACTIONS.c.counts.is_(True), _ACTIONS.c.requested_at >= since)
                )
                runs = [PastRun(p, a, t or "", n, at) for p, a, t, n, at in counted]
            admission = decide(runs)
            row.status = admission.status.value
            row.detail = admission.detail
            row.counts = admission.counts
            row.approval_due_at = admission.approval_due_at
            row.lease_owner = owner if admission.lease_until is not None else None
            row.lease_until = admission.lease_until
            if admission.status not in _OPEN_ENDED:
                row.finished_at = admission.at
            return admission

    @patient("recording a step's outcome")
    async def complete(self, result: ActionResult, *, verify_started_at: float | None = None) -> None:
        values: dict[str, Any] = {
            "status": result.status.value,
            "detail": result.detail,
            "finished_at": result.finished_at,
            "lease_owner": None,
            "lease_until": None,
        }
        if result.status is ActionStatus.VERIFYING:
            values["verify_started_at"] = verify_started_at
        async with self._begin() as session:
            outcome = await session.execute(update(_ACTIONS).where(_ACTIONS.c.id == result.request.id).values(values))
            if getattr(outcome, "rowcount", 0) != 1:
                raise NotFoundError(f"action {result.request.id} was never claimed")

    @patient("moving a step")
    async def transition(
        self,
        request_id: str,
        expected: ActionStatus,
        new: ActionStatus,
        detail: str,
        by: str,
        *,
        at: float,
        lease: Lease | None = None,
    ) -> bool:
        values: dict[str, Any] = {
            "status": new.value,
            "detail": detail,
            "decided_by": by,
            "lease_owner": None if lease is None else lease.owner,
            "lease_until": None if lease is None else lease.until,
        }
        if new not in _OPEN_ENDED:
            values["finished_at"] = at
        async with self._begin() as session:
            outcome = await session.execute(
                update(_ACTIONS).where(_ACTIONS.c.id == request_id, _ACTIONS.c.status == expected.value).values(values)
            )
            return bool(getattr(outcome, "rowcount", 0) == 1)

    @patient("reading a step")
    async def load(self, request_id: str) -> PlannedStep | None:
        async with self._read() as session:
            row = await session.get(ActionRow, request_id)
            return None if row is None else _step(row)

    @patient("reading a step's status")
    async def status(self, request_id: str) -> ActionStatus | None:
        async with self._read() as session:
            value = await session.scalar(select(_ACTIONS.c.status).where(_ACTIONS.c.id == request_id))
            return None if value is None else ActionStatus(value)

    @patient("reading steps awaiting approval")
    async def awaiting_approval(self, due_before: float) -> list[PlannedStep]:
        query = select(ActionRow).where(
            ActionRow.status == ActionStatus.AWAITING_APPROVAL.value, ActionRow.approval_due_at < due_before
        )
        async with self._read() as session:
            return [_step(row) for row in await session.scalars(query)]

    @patient("reading unrun verifications")
    async def unrun_verifications_since(self) -> float | None:
        query = select(func.min(_ACTIONS.c.requested_at)).where(
            _ACTIONS.c.status.in_(_UNFINISHED), _ACTIONS.c.verify_within.is_not(None)
        )
        async with self._read() as session:
            value = await session.scalar(query)
            return None if value is None else float(value)

    @patient("reading verifications")
    async def verifying(self) -> list[PendingVerification]:
        query = select(ActionRow).where(ActionRow.status == ActionStatus.VERIFYING.value)
        async with self._read() as session:
            pending = []
            for row in await session.scalars(query):
                verification = _step(row).verification
                if verification is not None and row.verify_started_at is not None:
                    pending.append(replace(verification, started_at=row.verify_started_at))
            return pending


async def insert_planned(
    session: AsyncSession | AsyncConnection, steps: Sequence[PlannedStep], *, at: float, postgres: bool
) -> None:
    """Planned steps into the ledger inside the caller's transaction (the one storing the incident changes that
    called for them); steps already there are left as they are."""
    if steps:
        await session.execute(_insert(postgres).values([_row_values(s, at=at) for s in steps]).on_conflict_do_nothing())


def _insert(postgres: bool) -> Any:
    return (postgresql_insert if postgres else sqlite_insert)(_ACTIONS)


def _row_values(step: PlannedStep, *, at: float) -> dict[str, Any]:
    request = step.request
    failed = step.failure is not None
    return {
        "id": request.id,
        "incident_id": request.incident_id,
        "playbook": request.playbook,
        "step": request.step,
        "action": request.action,
        "params": dict(request.params),
        "mode": request.mode.value,
        "status": (ActionStatus.FAILED if failed else ActionStatus.PENDING).value,
        "detail": step.failure,
        "requested_at": request.requested_at,
        "finished_at": at if failed else None,
        "explanation": dict(request.explanation),
        "approval_timeout_s": request.approval_timeout_s,
        "target": step.target,
        "namespace": step.namespace,
        # The standard encoder: a verification's context may hold NaN or infinities, which it writes and reads.
        "plan": json.dumps(step.document()),
        "verify_within": None if step.verification is None else step.verification.spec.within,
        "counts": False,
        "lease_owner": None,
        "lease_until": None,
    }


def _step(row: ActionRow) -> PlannedStep:
    request = ActionRequest.create(
        id=row.id,
        incident_id=row.incident_id,
        playbook=row.playbook,
        step=row.step,
        action=row.action,
        params=dict(row.params),
        mode=ActionMode(row.mode),
        requested_at=row.requested_at,
        approval_timeout_s=row.approval_timeout_s,
        explanation=dict(row.explanation or {}),
    )
    return PlannedStep.from_document(request, json.loads(row.plan) if row.plan else {})
