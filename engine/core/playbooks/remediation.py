"""Runs what the planner decides: every planned step passes the guards, then the executor, and the runs that
happened (or would have, in dry-run) are remembered for later guard decisions.
"""

from __future__ import annotations

from collections.abc import Sequence

from engine.core.actions.catalogue import ActionParams, parse_params
from engine.core.actions.executor import ActionExecutor, Gate
from engine.core.playbooks.guards import PastRun, Policy, RunHistory, check
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import PlannedStep, Planner
from engine.domain.events import ActionRequest, ActionResult, ActionStatus, IncidentChange

_COUNTED = (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN)


class Remediator:
    def __init__(self, planner: Planner, executor: ActionExecutor, policy: Policy, history: RunHistory) -> None:
        self._planner = planner
        self._executor = executor
        self._policy = policy
        self._history = history

    @property
    def planner(self) -> Planner:
        return self._planner

    def replace(self, playbooks: Sequence[Playbook], policy: Policy) -> None:
        """Swap playbooks and policy together (hot reload); steps already planned keep what they started with."""
        self._planner.replace_playbooks(playbooks)
        self._policy = policy

    async def handle(self, change: IncidentChange) -> list[ActionResult]:
        """Plan, guard and carry out the steps this incident change calls for, in playbook order."""
        results = []
        for planned in self._planner.plan(change):
            result = await self._executor.execute(planned.request, gate=self._gate(planned))
            if result.status in _COUNTED:
                self._remember(result)
            results.append(result)
        return results

    def _gate(self, planned: PlannedStep) -> Gate:
        def gate(request: ActionRequest, params: ActionParams) -> str | None:
            verdict = check(
                playbook=request.playbook,
                action=request.action,
                params=params,
                at=request.requested_at,
                guards=planned.guards,
                policy=self._policy,
                history=self._history,
            )
            if verdict.allowed:
                return None
            escalation = " (escalated to a human)" if verdict.escalate else ""
            return f"skipped by guard {verdict.guard}: {verdict.reason}{escalation}"

        return gate

    def _remember(self, result: ActionResult) -> None:
        request = result.request
        params = parse_params(request.action, request.params)
        self._history.record(
            PastRun(request.playbook, request.action, params.target(), params.target_namespace(), request.requested_at)
        )
