"""Drives remediation on the action ledger the way the pipeline does with ``workers=0``: the steps an incident
change calls for are stored in the ledger first, then every due step is carried out, in order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from engine.core.actions.executor import ActionBackend, ActionExecutor, RetryPolicy
from engine.core.actions.ledger import ActionLedger
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import Clock, FakeClock
from engine.domain.events import ActionMode, ActionResult, IncidentChange


def remediator(
    ledger: ActionLedger,
    playbooks: Sequence[Playbook] = (),
    *,
    clock: Clock | None = None,
    backends: Mapping[str, ActionBackend] | None = None,
    policy: Policy | None = None,
    mode: ActionMode = ActionMode.DRY_RUN,
    owner: str = "replica-a",
    retry: RetryPolicy | None = None,
) -> Remediator:
    """A remediator (and its executor, named ``owner``) on ``ledger``."""
    executor = ActionExecutor(ledger, clock or FakeClock(), backends or {}, retry, owner=owner)
    return Remediator(Planner(playbooks, mode), executor, ledger, policy or Policy())


async def handle(remediator: Remediator, ledger: ActionLedger, change: IncidentChange) -> list[ActionResult]:
    """Store the steps ``change`` calls for, then carry out every due step; the results, in the order they ran."""
    await ledger.plan(remediator.plan(change), at=change.at)
    return await drain(remediator)


async def drain(remediator: Remediator) -> list[ActionResult]:
    """Carry out due steps one at a time until none is due."""
    results: list[ActionResult] = []
    while batch := await remediator.run_due(1):
        results += batch
    return results
