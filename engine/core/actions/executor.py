"""Carries out action requests at most once each, honouring the request's mode.

In dry-run and shadow mode nothing is called: the result records the exact call that live mode would make.
Live calls go to a backend per action; the real Kubernetes and MLflow backends plug in here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol

from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.core.actions.catalogue import ActionParams, UnknownActionError, parse_params
from engine.core.ports import ActionLedger
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


# Asked after a request is claimed and its parameters are valid: a refusal, or None to go ahead.
Gate = Callable[[ActionRequest, ActionParams], Refusal | None]


class ActionExecutor:
    def __init__(
        self,
        ledger: ActionLedger,
        clock: Clock,
        backends: Mapping[str, ActionBackend],
        retry: RetryPolicy | None = None,
    ) -> None:
        self._ledger = ledger
        self._clock = clock
        self._backends = backends
        self._retry = retry or RetryPolicy()

    async def execute(self, request: ActionRequest, gate: Gate | None = None, *, verify: bool = False) -> ActionResult:
        """Claim, check and carry out ``request``; a request claimed before (by anyone) is not run again.

        With ``verify``, a request that ran is left in the VERIFYING state for ``finish_verification``.
        """
        if not await self._ledger.claim(request):
            return ActionResult(request, ActionStatus.DUPLICATE, "already carried out", self._clock.now())
        result = await self._run(request, gate)
        if verify and result.status in (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN):
            result = self._result(request, ActionStatus.VERIFYING, f"{result.detail}; verifying")
        await self._ledger.complete(result)
        return result

    async def finish_verification(
        self, request: ActionRequest, *, passed: bool, reason: str, undo: bool
    ) -> ActionResult:
        """Close a VERIFYING request: done when verified, otherwise undone (or failed if it cannot be undone)."""
        dry = request.mode is not ActionMode.LIVE
        params = parse_params(request.action, request.params)
        if passed:
            status, detail = (ActionStatus.DRY_RUN if dry else ActionStatus.SUCCEEDED), reason
        elif undo and params.undo_description() is not None:
            status, detail = ActionStatus.UNDONE, f"{reason}; {await self._undo(request, params)}; escalated to a human"
        else:
            status, detail = ActionStatus.FAILED, f"{reason}; not undone; escalated to a human"
        if not await self._ledger.transition(request.id, ActionStatus.VERIFYING, status, detail, "engine"):
            raise ConflictError(f"action {request.id} is not being verified")
        return self._result(request, status, detail)

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

    async def _run(self, request: ActionRequest, gate: Gate | None) -> ActionResult:
        try:
            params = parse_params(request.action, request.params)
        except (UnknownActionError, ValidationError) as exc:
            return self._result(request, ActionStatus.FAILED, f"invalid parameters: {exc}")
        refusal = gate(request, params) if gate is not None else None
        if refusal is not None:
            effects = {"guard": refusal.guard, "escalated": refusal.escalate}
            return self._result(request, ActionStatus.SKIPPED, str(refusal), effects)
        if request.approval_timeout_s is not None:
            return self._result(
                request,
                ActionStatus.AWAITING_APPROVAL,
                f"waiting up to {request.approval_timeout_s:g}s for a human to approve: {params.describe()}",
            )
        if request.mode is ActionMode.LIVE:
            # From here on a crash is reconciled by ``recover`` (asking the backend), never blindly repeated.
            await self._ledger.transition(
                request.id, ActionStatus.PENDING, ActionStatus.RUNNING, f"calling: {params.describe()}", "engine"
            )
        return await self._perform(request, params)

    async def recover(self) -> list[ActionResult]:
        """Finish what a crash left unfinished: pending requests run now; running ones are checked with their
        backend and only called again if their change is not in place."""
        results = []
        for request, status in await self._ledger.unfinished():
            try:
                params = parse_params(request.action, request.params)
            except (UnknownActionError, ValidationError) as exc:
                result = self._result(request, ActionStatus.FAILED, f"invalid parameters: {exc}")
            else:
                if status is ActionStatus.PENDING:
                    result = await self._run(request, gate=None)
                else:
                    result = await self._reconcile(request, params)
            await self._ledger.complete(result)
            results.append(result)
        return results

    async def _reconcile(self, request: ActionRequest, params: ActionParams) -> ActionResult:
        backend = self._backends.get(request.action)
        try:
            if backend is not None and await backend.applied(params, request):
                return self._result(
                    request, ActionStatus.SUCCEEDED, f"{params.describe()} (found in place after a restart)"
                )
        except EngineError as exc:
            return self._result(request, ActionStatus.FAILED, f"cannot tell whether it was applied: {exc}")
        return await self._perform(request, params)

    async def decide(
        self, request_id: str, *, approve: bool, by: str, comment: str = "", verify: bool = False
    ) -> ActionResult:
        """A human's decision on a step that waits for approval; ConflictError if it is not waiting.

        With ``verify``, an approved step that ran is left VERIFYING, as ``execute`` does.
        """
        request = await self._ledger.load(request_id)
        if request is None:
            raise NotFoundError(f"no action {request_id!r}")
        note = f" ({comment})" if comment else ""
        new = ActionStatus.RUNNING if approve else ActionStatus.REJECTED
        detail = f"{'approved' if approve else 'rejected'} by {by}{note}"
        if not await self._ledger.transition(request_id, ActionStatus.AWAITING_APPROVAL, new, detail, by):
            raise ConflictError(f"action {request_id} is not waiting for approval")
        if not approve:
            return self._result(request, ActionStatus.REJECTED, detail)
        try:
            params = parse_params(request.action, request.params)
        except (UnknownActionError, ValidationError) as exc:
            result = self._result(request, ActionStatus.FAILED, f"invalid parameters: {exc}")
        else:
            result = await self._perform(request, params)
            if verify and result.status in (ActionStatus.SUCCEEDED, ActionStatus.DRY_RUN):
                result = self._result(request, ActionStatus.VERIFYING, f"{result.detail}; verifying")
        await self._ledger.complete(result)
        return result

    async def load(self, request_id: str) -> ActionRequest | None:
        """A request as it was claimed (None if there is no such request)."""
        return await self._ledger.load(request_id)

    async def expire_overdue(self) -> list[ActionResult]:
        """Steps whose approval window has ended are expired (and need a human's attention)."""
        expired = []
        for request in await self._ledger.awaiting_approval(self._clock.now()):
            detail = "nobody approved in time; escalated to a human"
            if await self._ledger.transition(
                request.id, ActionStatus.AWAITING_APPROVAL, ActionStatus.EXPIRED, detail, "engine"
            ):
                expired.append(self._result(request, ActionStatus.EXPIRED, detail))
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
