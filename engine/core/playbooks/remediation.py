"""Runs what the planner decides: every planned step passes the guards, then the executor, and the runs that
happened (or would have, in dry-run) are remembered for later guard decisions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.core.actions.catalogue import ActionParams, parse_params
from engine.core.actions.executor import ActionExecutor, Gate, Refusal
from engine.core.playbooks.guards import PastRun, Policy, RunHistory, check
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import PlannedStep, Planner
from engine.core.playbooks.verification import PendingVerification, Verifier
from engine.domain.events import ActionRequest, ActionResult, ActionStatus, IncidentChange, MetricSample

# Steps that count against cooldowns, budgets and blast radius: those that ran (or would have, in dry-run), and
# those waiting for a person, who should not be asked again about the same target meanwhile.
_COUNTED = (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN, ActionStatus.VERIFYING, ActionStatus.AWAITING_APPROVAL)


class Remediator:
    def __init__(self, planner: Planner, executor: ActionExecutor, policy: Policy, history: RunHistory) -> None:
        self._planner = planner
        self._executor = executor
        self._policy = policy
        self._history = history
        self._verifier = Verifier()
        # Verifications of steps waiting for a person: they start when the step is approved and has run.
        self._after_approval: dict[str, PendingVerification] = {}
        self._watch_verified_series()

    def _watch_verified_series(self) -> None:
        self._verifier.watch(set().union(*(playbook.series_names() for playbook in self._planner.playbooks)))

    def observe(self, samples: Sequence[MetricSample]) -> None:
        """Every sample passes here first, so that verifications can look back at what arrived meanwhile."""
        self._verifier.observe(samples)

    async def settle(self, watermark: float) -> list[ActionResult]:
        """Close the verifications that the data up to ``watermark`` decides (undoing failed steps)."""
        results = []
        for outcome in self._verifier.settle(watermark):
            pending = outcome.pending
            results.append(
                await self._executor.finish_verification(
                    pending.request, passed=outcome.passed, reason=outcome.reason, undo=pending.undo
                )
            )
        return results

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def planner(self) -> Planner:
        return self._planner

    def replace(self, playbooks: Sequence[Playbook], policy: Policy) -> None:
        """Swap playbooks and policy together (hot reload); steps already planned keep what they started with."""
        self._planner.replace_playbooks(playbooks)
        self._policy = policy
        self._watch_verified_series()

    async def handle(self, change: IncidentChange) -> list[ActionResult]:
        """Plan, guard and carry out the steps this incident change calls for, in playbook order."""
        results = []
        for planned in self._planner.plan(change):
            verification = planned.verification
            result = await self._executor.execute(
                planned.request, gate=self._gate(planned), verify=verification is not None
            )
            if result.status in _COUNTED:
                self._remember(result)
            if result.status is ActionStatus.VERIFYING and verification is not None:
                self._verifier.start(verification)
            if result.status is ActionStatus.AWAITING_APPROVAL and verification is not None:
                self._after_approval[planned.request.id] = verification
            results.append(result)
        return results

    async def decide(self, request_id: str, *, approve: bool, by: str, comment: str = "") -> ActionResult:
        """A person's decision on a waiting step; an approved step that declares a verification is verified from
        the moment it ran, and undone if that fails, like any other step."""
        verification = self._after_approval.get(request_id)
        result = await self._executor.decide(
            request_id, approve=approve, by=by, comment=comment, verify=approve and verification is not None
        )
        self._after_approval.pop(request_id, None)
        if result.status is ActionStatus.VERIFYING and verification is not None:
            self._verifier.start(replace(verification, started_at=result.finished_at))
        return result

    async def load(self, request_id: str) -> ActionRequest | None:
        return await self._executor.load(request_id)

    def _gate(self, planned: PlannedStep) -> Gate:
        def gate(request: ActionRequest, params: ActionParams) -> Refusal | None:
            verdict = check(
                playbook=request.playbook,
                action=request.action,
                params=params,
                at=request.requested_at,
                guards=planned.guards,
                policy=self._policy,
                history=self._history,
            )
            return None if verdict.guard is None else Refusal(verdict.guard, verdict.reason, verdict.escalate)

        return gate

    def _remember(self, result: ActionResult) -> None:
        request = result.request
        params = parse_params(request.action, request.params)
        self._history.record(
            PastRun(request.playbook, request.action, params.target(), params.target_namespace(), request.requested_at)
        )
