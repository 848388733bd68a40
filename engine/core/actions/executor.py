"""Carries the steps of the action ledger out at most once each, honouring the request's mode.

In dry-run and shadow mode nothing is called: the result records the exact call that live mode would make.
Live calls go to a backend per action; the real Kubernetes and MLflow backends plug in here. Every state a step
passes through is the ledger's: the executor holds nothing a crash could lose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.core.actions.catalogue import ActionParams, UnknownActionError, parse_params
from engine.core.actions.ledger import ActionLedger, Admission, ClaimedStep, Decide, Lease
from engine.core.playbooks.guards import Guards, PastRun
from engine.core.playbooks.steps import PlannedStep
from engine.domain.clock import Clock
from engine.domain.errors import ConflictError, EngineError, NotFoundError, PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus


class ActionBackend(Protocol):
    """Carries out one kind of action on a real system.

    ``request.id`` is the idempotency key: backends record it on what they change (an annotation, a tag), so
    that after a crash ``applied`` can tell whether the change was made before the engine could record it, and
    ``undo`` can find the value the change replaced.
    """

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        """Perform the action; returns a sentence saying what was done. Raises EngineError subclasses."""

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        """Reverse what ``execute`` did for ``request``; returns a sentence saying what was done."""

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        """Whether the change made for ``request`` is in place."""


class StepDecider(Protocol):
    """Where a person's approval or rejection of a waiting step goes (the executor, or the remediator, which also
    starts the step's verification once it has run)."""

    async def decide(self, request_id: str, *, approve: bool, by: str, comment: str = "") -> ActionResult: ...

    async def load(self, request_id: str) -> ActionRequest | None: ...


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a live call is tried when it fails with a TemporaryError."""

    attempts: int = 3
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 30.0


@dataclass(frozen=True)
class Refusal:
    """Why a guard stopped a step; ``escalate`` when a human must take over rather than wait."""

    guard: str
    reason: str
    escalate: bool = False

    def __str__(self) -> str:
        return f"skipped by guard {self.guard}: {self.reason}" + (" (escalated to a human)" if self.escalate else "")


# Asked at admission with the runs the ledger counts over the step's look-back: a refusal, or None to go ahead.
Gate = Callable[[ActionRequest, ActionParams, Sequence[PastRun]], Refusal | None]

# How long a worker holds a claimed step before it is admitted: past it, another worker may take the step over.
CLAIM_LEASE_S = 60.0
_RAN = (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN)


class ActionExecutor:
    """Carries steps the action ledger holds through admission, the backend call and their outcome.

    ``owner`` names this replica in the leases it takes: a step leased to a replica that died is taken over once the
    lease runs out, and at once by a restarted replica of the same name.
    """

    def __init__(
        self,
        ledger: ActionLedger,
        clock: Clock,
        backends: Mapping[str, ActionBackend],
        retry: RetryPolicy | None = None,
        *,
        owner: str,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._backends = backends
        self._retry = retry or RetryPolicy()
        self._owner = owner

    @property
    def run_lease_s(self) -> float:
        """How long a running step stays leased: every attempt timing out, with the longest backoffs, and a margin."""
        policy = self._retry
        return policy.attempts * (policy.timeout_s + policy.max_backoff_s) + CLAIM_LEASE_S

    def lease(self, seconds: float) -> Lease:
        return Lease(self._owner, self._clock.now() + seconds)

    async def claim_due(self, limit: int, *, reclaim_own: bool = False) -> list[ClaimedStep]:
        return await self._ledger.claim_due(
            lease=self.lease(CLAIM_LEASE_S), now=self._clock.now(), limit=limit, reclaim_own=reclaim_own
        )

    async def execute(self, request: ActionRequest) -> ActionResult:
        """Store and carry out at once a request that no guard or approval stands before (escalation
        notifications); a request stored before (by anyone) is not run again."""
        step = PlannedStep(request, Guards())
        if not await self._ledger.claim(step, self.lease(CLAIM_LEASE_S)):
            return ActionResult(request, ActionStatus.DUPLICATE, "already carried out", self._clock.now())
        result = await self.run_claimed(ClaimedStep(step, ActionStatus.PENDING))
        if result is None:
            raise ConflictError(f"action {request.id} was taken over while it was being started")
        return result

    async def run_claimed(
        self, claimed: ClaimedStep, gate: Gate | None = None, since: float | None = None
    ) -> ActionResult | None:
        """Carry a claimed step on from where it is: a pending one through admission (guards with the runs counted
        from ``since``, approval) and its call; a running one (its worker died mid-call) by asking the backend
        whether its change is in place; an undoing one by undoing again. None when the lease was lost meanwhile.

        A step that declares a verification and ran is left VERIFYING, its window open from when it was planned.
        """
        step = claimed.step
        request = step.request
        params: ActionParams | None
        problem = ""
        try:
            params = parse_params(request.action, request.params)
        except (UnknownActionError, ValidationError) as exc:
            params, problem = None, f"invalid parameters: {exc}"
        if claimed.status is not ActionStatus.PENDING and params is None:
            result = self._result(request, ActionStatus.FAILED, problem)
            await self._ledger.complete(result)
            return result
        if claimed.status is ActionStatus.UNDOING and params is not None:
            # Its replica died while undoing: undo again (backends undo by the step's id, so twice is harmless).
            return await self._finish_undo(request, params, "verification failed")
        if claimed.status is ActionStatus.RUNNING and params is not None:
            result = await self._reconcile(request, params)
        else:
            admission = await self._ledger.admit(
                request.id, owner=self._owner, since=since, decide=self._decider(request, params, gate, problem)
            )
            if admission is None:
                return None
            if admission.status is not ActionStatus.RUNNING or params is None:
                return self._result(request, admission.status, admission.detail, admission.effects)
            result = await self._perform(request, params)
        verification = step.verification
        if verification is not None and result.status in _RAN:
            result = self._result(request, ActionStatus.VERIFYING, f"{result.detail}; verifying")
            await self._ledger.complete(result, verify_started_at=verification.started_at)
        else:
            await self._ledger.complete(result)
        return result

    def _decider(self, request: ActionRequest, params: ActionParams | None, gate: Gate | None, problem: str) -> Decide:
        def decide(runs: Sequence[PastRun]) -> Admission:
            now = self._clock.now()
            if params is None:
                return Admission(ActionStatus.FAILED, problem, counts=False, at=now)
            refusal = gate(request, params, runs) if gate is not None else None
            if refusal is not None:
                effects = MappingProxyType({"guard": refusal.guard, "escalated": refusal.escalate})
                return Admission(ActionStatus.SKIPPED, str(refusal), counts=False, at=now, effects=effects)
            if request.approval_timeout_s is not None:
                return Admission(
                    ActionStatus.AWAITING_APPROVAL,
                    f"waiting up to {request.approval_timeout_s:g}s for a human to approve: {params.describe()}",
                    counts=True,
                    at=now,
                    approval_due_at=now + request.approval_timeout_s,
                )
            # From here on a crash is reconciled (asking the backend), never blindly repeated.
            return Admission(
                ActionStatus.RUNNING,
                f"calling: {params.describe()}",
                counts=True,
                at=now,
                lease_until=now + self.run_lease_s,
            )

        return decide

    async def _reconcile(self, request: ActionRequest, params: ActionParams) -> ActionResult:
        backend = self._backends.get(request.action)
        try:
            if request.mode is ActionMode.LIVE and backend is not None and await backend.applied(params, request):
                return self._result(
                    request, ActionStatus.SUCCEEDED, f"{params.describe()} (found in place after a restart)"
                )
        except EngineError as exc:
            return self._result(request, ActionStatus.FAILED, f"cannot tell whether it was applied: {exc}")
        return await self._perform(request, params)

    async def finish_verification(
        self, request: ActionRequest, *, passed: bool, reason: str, undo: bool
    ) -> ActionResult:
        """Close a VERIFYING request: done when verified, otherwise undone (or failed if it cannot be undone, or if
        ``undo`` is False). ConflictError if another replica closed it first.

        An undo is taken like a step: VERIFYING -> UNDOING under a lease first, so that of two replicas judging at
        once only one undoes, and a replica that dies mid-undo leaves it to another."""
        dry = request.mode is not ActionMode.LIVE
        params = parse_params(request.action, request.params)
        now = self._clock.now()
        if undo and not passed and params.undo_description() is not None:
            if not await self._ledger.transition(
                request.id,
                ActionStatus.VERIFYING,
                ActionStatus.UNDOING,
                f"{reason}; undoing",
                "engine",
                at=now,
                lease=self.lease(self.run_lease_s),
            ):
                raise ConflictError(f"action {request.id} is not being verified")
            return await self._finish_undo(request, params, reason)
        if passed:
            status, detail = (ActionStatus.DRY_RUN if dry else ActionStatus.SUCCEEDED), reason
        else:
            status, detail = ActionStatus.FAILED, f"{reason}; not undone; escalated to a human"
        if not await self._ledger.transition(request.id, ActionStatus.VERIFYING, status, detail, "engine", at=now):
            raise ConflictError(f"action {request.id} is not being verified")
        return self._result(request, status, detail)

    async def _finish_undo(self, request: ActionRequest, params: ActionParams, reason: str) -> ActionResult:
        result = self._result(
            request, ActionStatus.UNDONE, f"{reason}; {await self._undo(request, params)}; escalated to a human"
        )
        await self._ledger.complete(result)
        return result

    async def _undo(self, request: ActionRequest, params: ActionParams) -> str:
        if request.mode is not ActionMode.LIVE:
            return f"would {params.undo_description()}"
        backend = self._backends.get(request.action)
        try:
            if backend is None:
                raise PermanentError(f"no live backend is configured for action {request.action!r}")
            return await self._call(lambda: backend.undo(params, request))
        except EngineError as exc:
            return f"undo failed: {exc}"

    async def decide(self, request_id: str, *, approve: bool, by: str, comment: str = "") -> ActionResult:
        """A person's decision on a step that waits for approval; ConflictError if it is not waiting.

        An approved step that declares a verification is left VERIFYING, its window open from when it ran.
        """
        step = await self._ledger.load(request_id)
        if step is None:
            raise NotFoundError(f"no action {request_id!r}")
        request = step.request
        note = f" ({comment})" if comment else ""
        new = ActionStatus.RUNNING if approve else ActionStatus.REJECTED
        detail = f"{'approved' if approve else 'rejected'} by {by}{note}"
        lease = self.lease(self.run_lease_s) if approve else None
        if not await self._ledger.transition(
            request_id, ActionStatus.AWAITING_APPROVAL, new, detail, by, at=self._clock.now(), lease=lease
        ):
            raise ConflictError(f"action {request_id} is not waiting for approval")
        if not approve:
            return self._result(request, ActionStatus.REJECTED, detail)
        try:
            params = parse_params(request.action, request.params)
        except (UnknownActionError, ValidationError) as exc:
            result = self._result(request, ActionStatus.FAILED, f"invalid parameters: {exc}")
        else:
            result = await self._perform(request, params)
            if step.verification is not None and result.status in _RAN:
                result = self._result(request, ActionStatus.VERIFYING, f"{result.detail}; verifying")
                await self._ledger.complete(result, verify_started_at=result.finished_at)
                return result
        await self._ledger.complete(result)
        return result

    async def load(self, request_id: str) -> ActionRequest | None:
        """A request as it was planned (None if there is no such request)."""
        step = await self._ledger.load(request_id)
        return None if step is None else step.request

    async def expire_overdue(self) -> list[ActionResult]:
        """Steps whose approval window has ended are expired (and need a human's attention)."""
        expired = []
        now = self._clock.now()
        for step in await self._ledger.awaiting_approval(now):
            detail = "nobody approved in time; escalated to a human"
            if await self._ledger.transition(
                step.request.id, ActionStatus.AWAITING_APPROVAL, ActionStatus.EXPIRED, detail, "engine", at=now
            ):
                expired.append(self._result(step.request, ActionStatus.EXPIRED, detail))
        return expired

    async def _perform(self, request: ActionRequest, params: ActionParams) -> ActionResult:
        if request.mode is not ActionMode.LIVE:
            return self._result(request, ActionStatus.DRY_RUN, f"would {params.describe()}")
        backend = self._backends.get(request.action)
        try:
            if backend is None:
                raise PermanentError(f"no live backend is configured for action {request.action!r}")
            detail = await self._call(lambda: backend.execute(params, request))
        except EngineError as exc:
            return self._result(request, ActionStatus.FAILED, f"{exc}; escalated to a human")
        return self._result(request, ActionStatus.SUCCEEDED, detail)

    async def _call(self, call: Callable[[], Awaitable[str]]) -> str:
        """``call`` with a timeout per attempt, retried with exponential backoff on temporary errors."""
        policy = self._retry

        async def attempt() -> str:
            try:
                async with asyncio.timeout(policy.timeout_s):
                    return await call()
            except TimeoutError as exc:
                raise TemporaryError(f"no answer within {policy.timeout_s:g}s") from exc

        retrying = AsyncRetrying(
            stop=stop_after_attempt(policy.attempts),
            wait=wait_exponential(multiplier=policy.first_backoff_s, max=policy.max_backoff_s),
            retry=retry_if_exception_type(TemporaryError),
            sleep=self._clock.sleep,
            reraise=True,
        )
        return await retrying(attempt)

    def _result(
        self, request: ActionRequest, status: ActionStatus, detail: str, effects: Mapping[str, Any] | None = None
    ) -> ActionResult:
        return ActionResult(request, status, detail, self._clock.now(), MappingProxyType(dict(effects or {})))
