"""Remediation on the action ledger: plans the steps incident changes call for, and carries out the steps the
ledger holds (every replica's), each through the guards and the approval rule, with its verification after it.

Nothing here is remembered only in memory: planned steps, guard history, approvals and verifications are the
ledger's; the planner's and verifier's state are caches of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from engine.core.actions.catalogue import ActionParams
from engine.core.actions.executor import ActionExecutor, Gate, Refusal
from engine.core.actions.ledger import ActionLedger, ClaimedStep
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.playbooks.guards import PastRun, Policy, check, lookback
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.verification import Verifier
from engine.domain.errors import ConflictError
from engine.domain.events import ActionRequest, ActionResult, ActionStatus, IncidentChange, MetricSample


class Remediator:
    def __init__(
        self,
        planner: Planner,
        executor: ActionExecutor,
        ledger: ActionLedger,
        policy: Policy,
        *,
        verifier: Verifier | None = None,
    ) -> None:
        self._planner = planner
        self._executor = executor
        self._ledger = ledger
        self._policy = policy
        self._verifier = verifier or Verifier()
        self._watch_verified_series()

    def _watch_verified_series(self) -> None:
        playbooks = self._planner.playbooks
        within = [step.verify.within for p in playbooks for step in p.steps if step.verify is not None]
        self._verifier.watch(
            set().union(*(playbook.series_names() for playbook in playbooks)), max(within, default=0.0)
        )

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def planner(self) -> Planner:
        return self._planner

    def replace(self, playbooks: Sequence[Playbook], policy: Policy, rules: CorrelationRules = NO_RULES) -> None:
        """Swap playbooks, policy and correlation rules together (hot reload); steps already planned keep what they
        were planned with."""
        self._planner.replace_playbooks(playbooks)
        self._planner.rules = rules
        self._policy = policy
        self._watch_verified_series()

    def plan(self, change: IncidentChange) -> list[PlannedStep]:
        """The steps this incident change calls for (to be stored in the ledger with the change)."""
        steps = self._planner.plan(change)
        for step in steps:
            if step.verification is not None:
                self._verifier.hold(step.verification.started_at)
        return steps

    def observe(self, samples: Sequence[MetricSample]) -> None:
        """Every sample passes here first, so that verifications can look back at what arrived meanwhile."""
        self._verifier.observe(samples)

    async def run_due(self, limit: int = 1, *, reclaim_own: bool = False) -> list[ActionResult]:
        """Claim up to ``limit`` due steps and carry each through; the results (none when nothing was due)."""
        results = []
        for claimed in await self._executor.claim_due(limit, reclaim_own=reclaim_own):
            result = await self._run(claimed)
            if result is not None:
                results.append(result)
        return results

    async def recover(self) -> list[ActionResult]:
        """At start: carry on every step a previous run of this replica (same identity) left unfinished."""
        results: list[ActionResult] = []
        while batch := await self.run_due(100, reclaim_own=True):
            results += batch
        return results

    async def _run(self, claimed: ClaimedStep) -> ActionResult | None:
        step = claimed.step
        since = lookback(step.guards, self._policy, step.request.action)
        at = step.request.requested_at
        result = await self._executor.run_claimed(
            claimed, gate=self._gate(step), since=None if since is None else at - since
        )
        if result is not None and result.status is ActionStatus.VERIFYING and step.verification is not None:
            self._verifier.start(step.verification)
        return result

    async def settle(self, watermark: float, *, refresh: bool = True) -> list[ActionResult]:
        """Close the verifications that the data up to ``watermark`` decides (undoing failed steps), every
        replica's pending ones (read from the ledger unless ``refresh`` is False) judged on this one's samples."""
        if refresh:
            holds = self._verifier.take_holds()
            self._verifier.track(await self._ledger.verifying())
            since = await self._ledger.unrun_verifications_since()
            self._verifier.keep_since(min([*holds, *([] if since is None else [since])], default=None))
        results = []
        for outcome in self._verifier.settle(watermark):
            pending = outcome.pending
            try:
                results.append(
                    await self._executor.finish_verification(
                        pending.request,
                        passed=outcome.passed,
                        reason=outcome.reason,
                        undo=pending.undo and outcome.judged,
                    )
                )
            except ConflictError:
                continue  # another replica judged it meanwhile
        return results

    async def hand_over_unjudged(self, now: float, grace_s: float) -> list[ActionResult]:
        """Verifications still open ``grace_s`` past their deadline (``now`` in event time: a live engine's clock)
        were judged by no replica (none saw the series): they end failed, not undone, and a person decides."""
        results = []
        for pending in await self._ledger.verifying():
            if now <= pending.deadline + grace_s:
                continue
            try:
                results.append(
                    await self._executor.finish_verification(
                        pending.request,
                        passed=False,
                        reason=f"no replica saw {pending.spec.series or pending.incident_series} to judge the "
                        f"verification within {grace_s:g}s of its deadline",
                        undo=False,
                    )
                )
            except ConflictError:
                continue  # judged meanwhile
        return results

    async def decide(self, request_id: str, *, approve: bool, by: str, comment: str = "") -> ActionResult:
        """A person's decision on a waiting step; an approved step that declares a verification is verified from
        the moment it ran, and undone if that fails, like any other step."""
        result = await self._executor.decide(request_id, approve=approve, by=by, comment=comment)
        if result.status is ActionStatus.VERIFYING:
            step = await self._ledger.load(request_id)
            if step is not None and step.verification is not None:
                self._verifier.start(replace(step.verification, started_at=result.finished_at))
        return result

    async def load(self, request_id: str) -> ActionRequest | None:
        return await self._executor.load(request_id)

    def _gate(self, step: PlannedStep) -> Gate:
        def gate(request: ActionRequest, params: ActionParams, runs: Sequence[PastRun]) -> Refusal | None:
            verdict = check(
                playbook=request.playbook,
                action=request.action,
                params=params,
                at=request.requested_at,
                guards=step.guards,
                policy=self._policy,
                history=runs,
            )
            return None if verdict.guard is None else Refusal(verdict.guard, verdict.reason, verdict.escalate)

        return gate
