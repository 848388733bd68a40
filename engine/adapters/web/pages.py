"""The on-call page, server-rendered: log in with an API token, see incidents and their timelines, acknowledge,
resolve, and approve or reject waiting steps.

The token is kept in an HttpOnly, SameSite=Strict cookie, so other sites can neither read it nor make the
browser post a form with it; every change is a POST followed by a redirect.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from engine.adapters.api.auth import ApiToken, Role, TokenBook
from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.executor import StepDecider
from engine.core.incident_desk import IncidentDesk
from engine.domain.errors import ConflictError, NotFoundError
from engine.domain.events import ActionStatus

COOKIE = "aiops_token"
ObjectId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(epoch: float) -> str:
    seconds = max(0.0, time.time() - epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def page_router(*, store: SqlStore, desk: IncidentDesk, executor: StepDecider, tokens: TokenBook) -> APIRouter:
    templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
    templates.env.globals.update(when=_when, age=_age)
    router = APIRouter(prefix="/ui", include_in_schema=False)

    def caller_of(request: Request) -> ApiToken | None:
        secret = request.cookies.get(COOKIE)
        return tokens.authenticate(secret) if secret else None

    def to_login() -> RedirectResponse:
        return RedirectResponse("/ui/login", status_code=303)

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return templates.TemplateResponse(request, "login.html", {"caller": None})

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        secret = str((await request.form()).get("token", ""))
        if not secret or tokens.authenticate(secret) is None:
            context = {"caller": None, "error": "That token is not valid."}
            return templates.TemplateResponse(request, "login.html", context, status_code=401)
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(COOKIE, secret, httponly=True, samesite="strict", path="/ui")
        return response

    @router.get("/logout")
    async def logout() -> Response:
        response = to_login()
        response.delete_cookie(COOKIE, path="/ui")
        return response

    @router.get("/", response_class=HTMLResponse)
    async def incidents(request: Request) -> Response:
        caller = caller_of(request)
        if caller is None:
            return to_login()
        context = {
            "caller": caller,
            "flash": request.query_params.get("flash"),
            "can_decide": caller.role >= Role.RESPONDER,
            "incidents": await store.list_incidents(limit=200),
            "approvals": await store.list_actions(status=ActionStatus.AWAITING_APPROVAL),
        }
        return templates.TemplateResponse(request, "incidents.html", context)

    @router.get("/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident(request: Request, incident_id: ObjectId) -> Response:
        caller = caller_of(request)
        if caller is None:
            return to_login()
        detail = await store.get_incident(incident_id)
        context = {
            "caller": caller,
            "flash": request.query_params.get("flash"),
            "can_decide": caller.role >= Role.RESPONDER,
            "incident": detail.incident,
            "timeline": detail.timeline,
            "actions": detail.actions,
        }
        return templates.TemplateResponse(request, "incident.html", context)

    async def decide(request: Request, back: str, act: Callable[[ApiToken], Awaitable[str]]) -> Response:
        caller = caller_of(request)
        if caller is None:
            return to_login()
        if caller.role < Role.RESPONDER:
            message = f"{caller.name} may look but not decide (viewer)."
        else:
            try:
                message = await act(caller)
            except (ConflictError, NotFoundError) as exc:
                message = str(exc)
        return RedirectResponse(f"{back}?flash={quote(message)}", status_code=303)

    @router.post("/incidents/{incident_id}/ack")
    async def acknowledge(request: Request, incident_id: ObjectId) -> Response:
        async def act(caller: ApiToken) -> str:
            await desk.acknowledge(incident_id, by=caller.name)
            return f"Acknowledged by {caller.name}."

        return await decide(request, f"/ui/incidents/{incident_id}", act)

    @router.post("/incidents/{incident_id}/resolve")
    async def resolve(request: Request, incident_id: ObjectId) -> Response:
        async def act(caller: ApiToken) -> str:
            await desk.resolve(incident_id, by=caller.name)
            return f"Resolved by {caller.name}."

        return await decide(request, f"/ui/incidents/{incident_id}", act)

    @router.post("/approvals/{action_id}/{verdict}")
    async def approval(request: Request, action_id: ObjectId, verdict: str) -> Response:
        if verdict not in ("approve", "reject"):
            return Response(status_code=404)
        record = await executor.load(action_id)
        back = f"/ui/incidents/{record.incident_id}" if record is not None else "/ui/"

        async def act(caller: ApiToken) -> str:
            result = await desk.decide_step(executor, action_id, approve=verdict == "approve", by=caller.name)
            return f"{result.request.action}: {result.status.value} - {result.detail}"

        return await decide(request, back, act)

    return router
