"""The action ledger port: the one durable home of remediation state, shared by every replica.

A step lives in the ledger from the moment it is planned (stored with the incident changes that called for it,
before the input that caused them is acknowledged) to its final outcome. Workers claim due steps under a lease;
a step's guards are decided in one atomic admission against the runs the ledger counts; approvals, verifications
and undos are transitions of the stored step. Memory only ever holds a cache of it.

Statuses a step moves through::

    pending --admit--> running --> succeeded | failed | dry-run | verifying --> succeeded | undone | failed
            \\--admit--> awaiting-approval --approve--> running ...   (--reject--> rejected, --timeout--> expired)
            \\--admit--> skipped (a guard refused it)   \\--> failed (invalid parameters, could not be planned)

A lease (owner, until) marks a step a worker is handling; a step whose lease ran out (its worker died) is claimed
again: a pending one goes through admission like a first run, a running one is reconciled with its backend.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from engine.domain.events import ActionResult, ActionStatus

if TYPE_CHECKING:
    # Types only: the playbook modules import the executor, which imports this port.
    from engine.core.playbooks.guards import PastRun
    from engine.core.playbooks.steps import PlannedStep
    from engine.core.playbooks.verification import PendingVerification

# Steps a worker may still have to act on: claimable when their lease has run out.
UNFINISHED = frozenset({ActionStatus.PENDING, ActionStatus.RUNNING, ActionStatus.UNDOING})


@dataclass(frozen=True)
class Admission:
    """The guards' and the approval rule's verdict on a claimed step, stored atomically with the runs it counted.

    ``status`` is RUNNING when the step may go ahead now; ``counts`` when later guard decisions count it as a run
    (it passed the guards, whatever becomes of it)."""

    status: ActionStatus
    detail: str
    counts: bool
    at: float
    effects: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    approval_due_at: float | None = None
    lease_until: float | None = None


# Given the runs counted since the step's look-back, the verdict to store.
Decide = Callable[[Sequence["PastRun"]], Admission]


@dataclass(frozen=True)
class Lease:
    owner: str
    until: float


@dataclass(frozen=True)
class ClaimedStep:
    """A step a worker now holds the lease of, with the status it had when claimed (PENDING or RUNNING)."""

    step: PlannedStep
    status: ActionStatus


@dataclass(frozen=True)
class QueuedStep:
    """What choosing due steps needs to know of an unfinished step."""

    id: str
    incident_id: str
    playbook: str
    step: int
    target: str
    status: ActionStatus
    requested_at: float
    lease: Lease | None


def choose_due(unfinished: Sequence[QueuedStep], *, owner: str, now: float, limit: int, reclaim_own: bool) -> list[str]:
    """The ids of the steps to claim, oldest first: one per target, the first unfinished step of each target (a
    target's steps run in the order they were planned), none whose earlier step in the same playbook run is
    unfinished, none leased to a live worker. Every ledger implementation chooses with this one function."""
    ordered = sorted(unfinished, key=lambda q: (q.requested_at, q.incident_id, q.playbook, q.step, q.id))
    first_open: dict[tuple[str, str], int] = {}
    for queued in ordered:
        run = (queued.incident_id, queued.playbook)
        first_open[run] = min(first_open.get(run, queued.step), queued.step)
    taken: set[str] = set()
    chosen: list[str] = []
    for queued in ordered:
        if len(chosen) >= limit:
            break
        if queued.target in taken:
            continue
        taken.add(queued.target)
        lease = queued.lease
        leased = lease is not None and lease.until >= now and not (reclaim_own and lease.owner == owner)
        if leased or first_open[(queued.incident_id, queued.playbook)] < queued.step:
            continue
        chosen.append(queued.id)
    return chosen


class ActionLedger(Protocol):
    async def plan(self, steps: Sequence[PlannedStep], *, at: float) -> None:
        """Store planned steps as PENDING (a step that could not be planned as FAILED); a step whose id is already
        stored is left as it is, so planning again after a crash or on another replica changes nothing."""

    async def claim(self, step: PlannedStep, lease: Lease) -> bool:
        """Store ``step`` as PENDING under ``lease`` for immediate handling; False if its id is already stored."""

    async def claim_due(self, *, lease: Lease, now: float, limit: int, reclaim_own: bool = False) -> list[ClaimedStep]:
        """Take the lease of up to ``limit`` unfinished steps whose lease is free or has run out (also the ones
        leased to ``lease.owner`` when ``reclaim_own``: a restarted replica with the same identity), oldest first,
        and never a step whose target another leased step is changing or whose earlier step in the same playbook
        run is unfinished."""

    async def admit(self, request_id: str, *, owner: str, since: float | None, decide: Decide) -> Admission | None:
        """Atomically with every other admission: the runs counted from ``since`` (none when None), the verdict
        ``decide`` gives on them, stored. None (and nothing stored) unless the step is PENDING and leased to
        ``owner``."""

    async def complete(self, result: ActionResult, *, verify_started_at: float | None = None) -> None:
        """Record the outcome (or the new state) of a claimed step and release its lease; a VERIFYING step keeps
        the time its verification window opened."""

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
        """Move a step from ``expected`` to ``new`` atomically (taking ``lease`` if given); False if it was not in
        ``expected`` state."""

    async def load(self, request_id: str) -> PlannedStep | None:
        """The step as it was planned, or None."""

    async def status(self, request_id: str) -> ActionStatus | None: ...

    async def awaiting_approval(self, due_before: float) -> list[PlannedStep]:
        """Steps still waiting for a person whose approval window ended before ``due_before``."""

    async def verifying(self) -> list[PendingVerification]:
        """Every step whose verification is under way, with the moment its window opened."""

    async def unrun_verifications_since(self) -> float | None:
        """The earliest moment a verification of a step that has not run yet will look back to (its planning
        time), or None: samples since then must be kept for it."""
