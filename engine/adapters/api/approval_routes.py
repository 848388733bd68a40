"""API routes for steps that wait for a human: list them (viewer), approve or reject them (responder).

The decision is recorded with the caller's token name and comment.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, Field

from engine.adapters.api.auth import ApiToken, Role, TokenBook, requirement
from engine.adapters.api.schemas import ActionOut
from engine.adapters.api.strict_json import StrictJsonRoute
from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.executor import StepDecider
from engine.core.incident_desk import IncidentDesk
from engine.domain.events import ActionResult, ActionStatus

ActionId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


# The comment is optional, so the body may be left out altogether.
OptionalDecision = Annotated[Decision, Body(default_factory=Decision)]


class DecisionOut(BaseModel):
    id: str
    status: str
    detail: str


def approval_router(
    store: SqlStore, executor: StepDecider, tokens: TokenBook, desk: IncidentDesk | None = None
) -> APIRouter:
    router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"], route_class=StrictJsonRoute)
    responder = Depends(requirement(tokens, Role.RESPONDER))

    async def _decide(action_id: str, *, approve: bool, by: str, comment: str) -> ActionResult:
        if desk is None:
            return await executor.decide(action_id, approve=approve, by=by, comment=comment)
        return await desk.decide_step(executor, action_id, approve=approve, by=by, comment=comment)

    @router.get("", dependencies=[Depends(requirement(tokens, Role.VIEWER))])
    async def pending() -> list[ActionOut]:
        """Steps waiting for approval, newest first."""
        return [ActionOut.of(r) for r in await store.list_actions(status=ActionStatus.AWAITING_APPROVAL)]

    @router.post("/{action_id}/approve", responses={404: {}, 409: {"description": "not waiting for approval"}})
    async def approve(action_id: ActionId, decision: OptionalDecision, caller: ApiToken = responder) -> DecisionOut:
        """Approve a waiting step: it runs now (in the mode it was planned in)."""
        return _out(await _decide(action_id, approve=True, by=caller.name, comment=decision.comment))

    @router.post("/{action_id}/reject", responses={404: {}, 409: {"description": "not waiting for approval"}})
    async def reject(action_id: ActionId, decision: OptionalDecision, caller: ApiToken = responder) -> DecisionOut:
        """Reject a waiting step: it will not run."""
        return _out(await _decide(action_id, approve=False, by=caller.name, comment=decision.comment))

    return router


def _out(result: ActionResult) -> DecisionOut:
    return DecisionOut(id=result.request.id, status=result.status.value, detail=result.detail)
