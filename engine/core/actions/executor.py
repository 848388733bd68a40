"""Carries out action requests at most once each, honouring the request's mode.

In dry-run and shadow mode nothing is called: the result records the exact call that live mode would make.
Live calls go to a backend per action; the real Kubernetes and MLflow backends plug in here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from pydantic import ValidationError

from engine.core.actions.catalogue import ActionParams, UnknownActionError, parse_params
from engine.core.ports import ActionLedger
from engine.domain.clock import Clock
from engine.domain.errors import EngineError, PermanentError
from engine.domain.events import ActionMode, ActionRequest, ActionResult, ActionStatus


class ActionBackend(Protocol):
    async def execute(self, params: ActionParams) -> str:
        """Perform the action; returns a sentence saying what was done. Raises EngineError subclasses."""


# Asked after a request is claimed and its parameters are valid: the reason to skip it, or None to go ahead.
Gate = Callable[[ActionRequest, ActionParams], str | None]


class ActionExecutor:
    def __init__(self, ledger: ActionLedger, clock: Clock, backends: Mapping[str, ActionBackend]) -> None:
        self._ledger = ledger
        self._clock = clock
        self._backends = backends

    async def execute(self, request: ActionRequest, gate: Gate | None = None) -> ActionResult:
        """Claim, check and carry out ``request``; a request claimed before (by anyone) is not run again."""
        if not await self._ledger.claim(request):
            return ActionResult(request, ActionStatus.DUPLICATE, "already carried out", self._clock.now())
        result = await self._run(request, gate)
        await self._ledger.complete(result)
        return result

    async def _run(self, request: ActionRequest, gate: Gate | None) -> ActionResult:
        try:
            params = parse_params(request.action, request.params)
        except (UnknownActionError, ValidationError) as exc:
            return self._result(request, ActionStatus.FAILED, f"invalid parameters: {exc}")
        refusal = gate(request, params) if gate is not None else None
        if refusal is not None:
            return self._result(request, ActionStatus.SKIPPED, refusal)
        if request.mode is not ActionMode.LIVE:
            return self._result(request, ActionStatus.DRY_RUN, f"would {params.describe()}")
        backend = self._backends.get(request.action)
        try:
            if backend is None:
                raise PermanentError(f"no live backend is configured for action {request.action!r}")
            detail = await backend.execute(params)
        except EngineError as exc:
            return self._result(request, ActionStatus.FAILED, str(exc))
        return self._result(request, ActionStatus.SUCCEEDED, detail)

    def _result(self, request: ActionRequest, status: ActionStatus, detail: str) -> ActionResult:
        return ActionResult(request, status, detail, self._clock.now())
