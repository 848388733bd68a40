"""API routes for on-call decisions on incidents (responder role): ack, unack, resolve, comment, snooze.

A body whose fields all have defaults may be left out (an empty POST acknowledges, unacknowledges or resolves).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from engine.adapters.api.auth import ApiToken, Role, TokenBook, requirement
from engine.adapters.api.schemas import IncidentOut
from engine.adapters.api.strict_json import StrictJsonRoute
from engine.core.incident_desk import IncidentDesk

IncidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "no such incident"},
    409: {"description": "the incident is not in a state that allows this"},
}


class Note(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(default="", max_length=2000)


class Comment(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str = Field(min_length=1, max_length=2000)


class Snooze(BaseModel):
    model_config = ConfigDict(extra="forbid")

    until: AwareDatetime = Field(description="when the snooze ends (ISO 8601 with a zone), within the next 7 days")
    comment: str = Field(default="", max_length=2000)


OptionalNote = Annotated[Note, Body(default_factory=Note)]


def incident_router(desk: IncidentDesk, tokens: TokenBook) -> APIRouter:
    router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], responses=_ERRORS, route_class=StrictJsonRoute)
    responder = Depends(requirement(tokens, Role.RESPONDER))

    @router.post("/{incident_id}/ack")
    async def acknowledge(incident_id: IncidentId, note: OptionalNote, caller: ApiToken = responder) -> IncidentOut:
        """Take the incident: it stops escalating until it is unacknowledged or resolved."""
        return IncidentOut.of(await desk.acknowledge(incident_id, by=caller.name, comment=note.comment))

    @router.post("/{incident_id}/unack")
    async def unacknowledge(incident_id: IncidentId, note: OptionalNote, caller: ApiToken = responder) -> IncidentOut:
        """Give the incident back: it is open again."""
        return IncidentOut.of(await desk.unacknowledge(incident_id, by=caller.name, comment=note.comment))

    @router.post("/{incident_id}/resolve")
    async def resolve(incident_id: IncidentId, note: OptionalNote, caller: ApiToken = responder) -> IncidentOut:
        """Close the incident; new signals open a new one."""
        return IncidentOut.of(await desk.resolve(incident_id, by=caller.name, comment=note.comment))

    @router.post("/{incident_id}/comment")
    async def comment(incident_id: IncidentId, body: Comment, caller: ApiToken = responder) -> IncidentOut:
        """Add a comment to the incident's timeline."""
        return IncidentOut.of(await desk.comment(incident_id, by=caller.name, comment=body.comment))

    @router.post(
        "/{incident_id}/snooze", responses={409: {"description": "resolved, or the end is not in the next 7 days"}}
    )
    async def snooze(incident_id: IncidentId, body: Snooze, caller: ApiToken = responder) -> IncidentOut:
        """Snooze the incident until a time."""
        until = datetime.timestamp(body.until)
        return IncidentOut.of(await desk.snooze(incident_id, until=until, by=caller.name, comment=body.comment))

    return router
