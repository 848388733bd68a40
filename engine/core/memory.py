"""In-memory implementations of the store ports, for playbook tests, backtests and unit tests: the same contract as
the SQL store (the contract suites run against both), no database, one process only."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace

from engine.core.actions.ledger import (
    UNFINISHED,
    Admission,
    ClaimedStep,
    Decide,
    Lease,
    QueuedStep,
    choose_due,
)
from engine.core.incident_merge import Merge
from engine.core.playbooks.guards import PastRun
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import PendingVerification
from engine.core.ports import Planning
from engine.core.signal_points import SignalPoint
from engine.domain.errors import NotFoundError
from engine.domain.events import (
    ActionResult,
    ActionStatus,
    Incident,
    IncidentChange,
    IncidentState,
)


@dataclass
class _Entry:
    step: PlannedStep
    status: ActionStatus
    detail: str | None = None
    lease: Lease | None = None
    counts: bool = False
    approval_due_at: float | None = None
    verify_started_at: float | None = None
    finished_at: float | None = None
    decided_by: str | None = None


class InMemoryLedger:
    """The action ledger port in memory."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    async def plan(self, steps: Sequence[PlannedStep], *, at: float) -> None:
        for step in steps:
            if step.request.id in self._entries:
                continue
            if step.failure is not None:
                self._entries[step.request.id] = _Entry(step, ActionStatus.FAILED, step.failure, finished_at=at)
            else:
                self._entries[step.request.id] = _Entry(step, ActionStatus.PENDING)

    async def claim(self, step: PlannedStep, lease: Lease) -> bool:
        if step.request.id in self._entries:
            return False
        if step.failure is not None:
            # As ``plan`` stores it: a step that could not be planned is never run.
            self._entries[step.request.id] = _Entry(step, ActionStatus.FAILED, step.failure, finished_at=lease.until)
        else:
            self._entries[step.request.id] = _Entry(step, ActionStatus.PENDING, lease=lease)
        return True

    async def claim_due(self, *, lease: Lease, now: float, limit: int, reclaim_own: bool = False) -> list[ClaimedStep]:
        queued = [
            QueuedStep(
                request_id,
                entry.step.request.incident_id,
                entry.step.request.playbook,
                entry.step.request.step,
                entry.step.target,
                entry.status,
                entry.step.request.requested_at,
                entry.lease,
            )
            for request_id, entry in self._entries.items()
            if entry.status in UNFINISHED
        ]
        claimed = []
        for request_id in choose_due(queued, owner=lease.owner, now=now, limit=limit, reclaim_own=reclaim_own):
            entry = self._entries[request_id]
            entry.lease = lease
            claimed.append(ClaimedStep(entry.step, entry.status))
        return claimed

    async def admit(self, request_id: str, *, owner: str, since: float | None, decide: Decide) -> Admission | None:
        entry = self._entries.get(request_id)
        if (
            entry is None
            or entry.status is not ActionStatus.PENDING
            or entry.lease is None
            or entry.lease.owner != owner
        ):
            return None
        runs = [] if since is None else self._runs(since)
        admission = decide(runs)
        entry.status, entry.detail, entry.counts = admission.status, admission.detail, admission.counts
        entry.lease = None if admission.lease_until is None else Lease(owner, admission.lease_until)
        entry.approval_due_at = admission.approval_due_at
        if admission.status not in UNFINISHED and admission.status is not ActionStatus.AWAITING_APPROVAL:
            entry.finished_at = admission.at
        return admission

    def _runs(self, since: float) -> list[PastRun]:
        return [
            PastRun(
                e.step.request.playbook,
                e.step.request.action,
                e.step.target,
                e.step.namespace,
                e.step.request.requested_at,
            )
            for e in self._entries.values()
            if e.counts and e.step.request.requested_at >= since
        ]

    async def complete(self, result: ActionResult, *, verify_started_at: float | None = None) -> None:
        entry = self._entries.get(result.request.id)
        if entry is None:
            raise NotFoundError(f"action {result.request.id} was never claimed")
        entry.status, entry.detail, entry.lease = result.status, result.detail, None
        entry.finished_at = result.finished_at
        if result.status is ActionStatus.VERIFYING:
            entry.verify_started_at = verify_started_at

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
        entry = self._entries.get(request_id)
        if entry is None or entry.status is not expected:
            return False
        entry.status, entry.detail, entry.decided_by, entry.lease = new, detail, by, lease
        if new not in UNFINISHED:
            entry.finished_at = at
        return True

    async def load(self, request_id: str) -> PlannedStep | None:
        entry = self._entries.get(request_id)
        return None if entry is None else entry.step

    async def status(self, request_id: str) -> ActionStatus | None:
        entry = self._entries.get(request_id)
        return None if entry is None else entry.status

    async def awaiting_approval(self, due_before: float) -> list[PlannedStep]:
        return [
            e.step
            for e in self._entries.values()
            if e.status is ActionStatus.AWAITING_APPROVAL
            and e.approval_due_at is not None
            and e.approval_due_at < due_before
        ]

    async def unrun_verifications_since(self) -> float | None:
        return min(
            (
                e.step.request.requested_at
                for e in self._entries.values()
                if e.status in UNFINISHED and e.step.verification is not None
            ),
            default=None,
        )

    async def verifying(self) -> list[PendingVerification]:
        return [
            replace(e.step.verification, started_at=e.verify_started_at)
            for e in self._entries.values()
            if e.status is ActionStatus.VERIFYING
            and e.step.verification is not None
            and e.verify_started_at is not None
        ]


class InMemoryStore(InMemoryLedger):
    """The incident store and the action ledger in memory: the changes it holds are kept in a list, in order (every
    incident's timeline), their steps in the ledger. No person decides here: an incident is resolved by its own
    changes only."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[IncidentChange] = []
        self._incidents: dict[str, Incident] = {}
        # The active incident of each fingerprint (a group has one at a time).
        self._active: dict[str, str] = {}
        # (incident id, series text) -> time -> value: the samples of incidents' signals.
        self.signal_points: dict[tuple[str, str], dict[float, float]] = {}

    async def apply_changes(
        self, changes: Sequence[IncidentChange], planned: Sequence[PlannedStep] = (), *, plan: Planning | None = None
    ) -> list[IncidentChange]:
        fingerprints = {change.incident.fingerprint for change in changes}
        ids = {change.incident.id for change in changes} | {
            self._active[fp] for fp in fingerprints if fp in self._active
        }
        merge = Merge.of(self._incidents[i] for i in ids if i in self._incidents)
        stored = merge.apply(changes)
        for incident in merge.changed.values():
            self._incidents[incident.id] = incident
            if incident.state is IncidentState.RESOLVED:
                if self._active.get(incident.fingerprint) == incident.id:
                    del self._active[incident.fingerprint]
            else:
                self._active[incident.fingerprint] = incident.id
        self.changes.extend(stored)
        steps = [*planned, *(plan(stored) if plan is not None else ())]
        if steps:
            await self.plan(steps, at=_latest(stored, steps))
        return stored

    async def add_signal_points(self, points: Sequence[SignalPoint]) -> None:
        for incident_id, series, at, value in points:
            self.signal_points.setdefault((incident_id, series), {})[at] = value

    async def resolved_among(self, incident_ids: Collection[str]) -> set[str]:
        return {
            incident_id
            for incident_id in incident_ids
            if (held := self._incidents.get(incident_id)) is not None and held.state is IncidentState.RESOLVED
        }


def _latest(changes: Sequence[IncidentChange], planned: Sequence[PlannedStep]) -> float:
    """When a call's steps were planned: its latest change (or step, when it brings steps alone)."""
    return max([change.at for change in changes] + [step.request.requested_at for step in planned])
