"""API routes for signal silences: on-call mutes what the detectors find on matching series for a while."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from engine.adapters.api.auth import ApiToken, Role, TokenBook, requirement
from engine.adapters.api.strict_json import StrictJsonRoute
from engine.core.playbooks.expressions import Duration
from engine.core.silences import SignalSilence, SilenceDesk

SilenceId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
MAX_SILENCE_S = 30 * 86400.0


class NewSilence(BaseModel):
    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
    matchers: list[Annotated[str, Field(min_length=3, max_length=512)]] = Field(
        default_factory=list, max_length=20, description='Prometheus-style label matchers, e.g. model=~"fraud.*"'
    )
    duration: Duration = Field(description="how long, e.g. 2h (at most 30 days)")
    comment: str = Field(min_length=1, max_length=2000, description="why (shown to everyone on call)")


class SilenceOut(BaseModel):
    id: str
    metric: str | None
    matchers: list[str]
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str

    @classmethod
    def of(cls, silence: SignalSilence) -> SilenceOut:
        return cls(
            id=silence.id,
            metric=silence.metric,
            matchers=list(silence.matchers),
            starts_at=datetime.fromtimestamp(silence.starts_at, UTC),
            ends_at=datetime.fromtimestamp(silence.ends_at, UTC),
            created_by=silence.created_by,
            comment=silence.comment,
        )


def silence_router(desk: SilenceDesk, tokens: TokenBook) -> APIRouter:
    router = APIRouter(prefix="/api/v1/silences", tags=["silences"], route_class=StrictJsonRoute)
    responder = Depends(requirement(tokens, Role.RESPONDER))

    @router.get("", dependencies=[Depends(requirement(tokens, Role.VIEWER))])
    async def active() -> list[SilenceOut]:
        """The silences in force, soonest to end first."""
        return [SilenceOut.of(silence) for silence in desk.active()]

    @router.post("", status_code=201, responses={422: {"description": "invalid matcher or duration"}})
    async def create(body: NewSilence, caller: ApiToken = responder) -> SilenceOut:
        """Silence a signal: detections on matching series open and update no incident until it ends."""
        if not 0 < body.duration <= MAX_SILENCE_S:
            raise HTTPException(422, "duration must be more than 0 and at most 30 days")
        try:
            silence = await desk.silence(
                metric=body.metric,
                matchers=body.matchers,
                duration_s=body.duration,
                by=caller.name,
                comment=body.comment,
            )
        except ValueError as exc:
            raise HTTPException(422, str(exc)) from exc
        return SilenceOut.of(silence)

    @router.delete(
        "/{silence_id}",
        responses={404: {"description": "no such silence"}, 409: {"description": "the silence has already ended"}},
    )
    async def end(silence_id: SilenceId, caller: ApiToken = responder) -> SilenceOut:
        """End a silence now."""
        return SilenceOut.of(await desk.end(silence_id))

    return router
