"""The on-call page, server-rendered: log in with an API token, list and filter incidents, see an incident's
signals drawn and ranked by probable cause with its timeline in words, acknowledge, resolve, and approve or reject
waiting steps.

A login becomes a signed, expiring session cookie (``sessions.py``; HttpOnly, SameSite=Strict, Secure over
HTTPS), never the token itself. Every change is a form POST that must come from this origin and carry the
session's form token (``protection.py``), followed by a redirect whose message is one of a fixed set of codes.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from engine.adapters.api.auth import ApiToken, Role, TokenBook
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.web.incident_view import MAX_PICTURES, incident_view
from engine.adapters.web.listing import PAGE_SIZE, SEVERITIES, STATES, labels_besides_model, read_filter
from engine.adapters.web.protection import from_this_origin
from engine.adapters.web.sessions import PageSession, PageSessions
from engine.core.actions.executor import StepDecider
from engine.core.incident_desk import IncidentDesk
from engine.domain.errors import ConflictError, NotFoundError
from engine.domain.events import ActionStatus

COOKIE = "aiops_session"
STYLESHEET = Path(__file__).with_name("static") / "page.css"
ObjectId = Annotated[str, PathParam(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
# The page's forms hold a token or a form token and nothing else: anything bigger is not one of them.
_MAX_FORM_BYTES = 4096
_MAX_FORM_FIELDS = 4
# The only messages the page shows after a change: a link cannot make it say anything else.
FLASHES = {
    "acknowledged": "Acknowledged.",
    "resolved": "Resolved.",
    "approved": "Step approved; its outcome is in the actions table.",
    "rejected": "Step rejected.",
    "viewer": "Viewers may look but not decide.",
    "conflict": "Nothing changed: that no longer applies (someone else decided first, or the state moved on).",
    "not-found": "There is no such incident or step.",
    "logged-out": "You are logged out.",
}


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _age(epoch: float) -> str:
    seconds = max(0.0, time.time() - epoch)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


async def _read_form(request: Request) -> dict[str, str] | None:
    """The fields of a small URL-encoded form; None if the body is anything else (too big, another type)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM_BYTES:
            return None
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=_MAX_FORM_FIELDS))
    except (UnicodeDecodeError, ValueError):
        return None


def _refused(reason: str) -> Response:
    return Response(reason, status_code=403, media_type="text/plain")


class _Page:
    """What every route of the page shares: its sessions, its templates, and how a form POST is checked."""

    def __init__(self, tokens: TokenBook, sessions: PageSessions) -> None:
        self.tokens = tokens
        self.sessions = sessions
        self.templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
        self.templates.env.globals.update(when=_when, age=_age, labels_besides_model=labels_besides_model)

    def session_of(self, request: Request) -> PageSession | None:
        cookie = request.cookies.get(COOKIE)
        return self.sessions.read(cookie, self.tokens) if cookie else None

    def render(
        self, request: Request, name: str, session: PageSession | None, status_code: int = 200, **context: object
    ) -> Response:
        code = request.query_params.get("flash")
        context |= {
            "caller": session.caller if session else None,
            "csrf": session.csrf if session else "",
            "flash_code": code if code in FLASHES else None,
            "flashes": FLASHES,
        }
        return self.templates.TemplateResponse(request, name, context, status_code=status_code)

    def log_in(self, request: Request, caller: ApiToken) -> Response:
        cookie, _ = self.sessions.issue(caller)
        response = RedirectResponse("/ui/", status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(self.sessions.lifetime_s),
            path="/ui",
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
        return response

    async def posted_form(self, request: Request) -> dict[str, str] | Response:
        """The fields of a state-changing form POST, or the response that refuses it."""
        if not from_this_origin(request):
            return _refused("cross-origin form posts are refused")
        form = await _read_form(request)
        if form is None:
            return Response("not a form of this page", status_code=400, media_type="text/plain")
        return form

    async def posted_in_session(self, request: Request) -> PageSession | Response | None:
        """The session of a state-changing form POST (None: not logged in), or the response that refuses it."""
        form = await self.posted_form(request)
        if isinstance(form, Response):
            return form
        session = self.session_of(request)
        if session is not None and not hmac.compare_digest(form.get("csrf", ""), session.csrf):
            return _refused("the form token does not match the session")
        return session

    async def decide(self, request: Request, act: Callable[[ApiToken], Awaitable[str]], back: str) -> Response:
        """Run ``act`` for a responder who posted one of the page's forms, then go ``back`` with its flash code."""
        session = await self.posted_in_session(request)
        if isinstance(session, Response):
            return session
        if session is None:
            return _to_login()
        if session.caller.role < Role.RESPONDER:
            flash = "viewer"
        else:
            try:
                flash = await act(session.caller)
            except ConflictError:
                flash = "conflict"
            except NotFoundError:
                flash = "not-found"
        return RedirectResponse(f"{back}?flash={flash}", status_code=303)


def _to_login(flash: str | None = None) -> RedirectResponse:
    return RedirectResponse(f"/ui/login?flash={flash}" if flash else "/ui/login", status_code=303)


def page_router(
    *, store: SqlStore, desk: IncidentDesk, executor: StepDecider, tokens: TokenBook, sessions: PageSessions
) -> APIRouter:
    page = _Page(tokens, sessions)
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/page.css")
    async def stylesheet() -> Response:
        return FileResponse(STYLESHEET, media_type="text/css")

    @router.get("/login", response_class=HTMLResponse)
    async def login_form(request: Request) -> Response:
        return page.render(request, "login.html", None)

    @router.post("/login", response_class=HTMLResponse)
    async def login(request: Request) -> Response:
        form = await page.posted_form(request)
        if isinstance(form, Response):
            return form
        secret = form.get("token", "")
        caller = tokens.authenticate(secret) if secret else None
        if caller is None:
            return page.render(request, "login.html", None, error=True, status_code=401)
        return page.log_in(request, caller)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        posted = await page.posted_in_session(request)
        if isinstance(posted, Response):
            return posted
        response = _to_login("logged-out")
        response.delete_cookie(
            COOKIE, path="/ui", secure=request.url.scheme == "https", httponly=True, samesite="strict"
        )
        return response

    @router.get("/", response_class=HTMLResponse)
    async def incidents(request: Request) -> Response:
        session = page.session_of(request)
        if session is None:
            return _to_login()
        listing = read_filter(request.query_params)
        found = []
        if not listing.problems:
            found = await store.list_incidents(
                state=listing.state,
                severity=listing.severity,
                model=listing.model,
                before=listing.before,
                limit=PAGE_SIZE,
            )
        return page.render(
            request,
            "incidents.html",
            session,
            status_code=400 if listing.problems else 200,
            can_decide=session.caller.role >= Role.RESPONDER,
            listing=listing,
            states=STATES,
            severities=SEVERITIES,
            incidents=found,
            next_page=listing.next_page(found),
            approvals=await store.list_actions(status=ActionStatus.AWAITING_APPROVAL),
        )

    @router.get("/incidents/{incident_id}", response_class=HTMLResponse)
    async def incident(request: Request, incident_id: ObjectId) -> Response:
        session = page.session_of(request)
        if session is None:
            return _to_login()
        detail = await store.get_incident(incident_id)
        view = incident_view(detail, await store.signal_points(incident_id), desk.rules)
        return page.render(
            request,
            "incident.html",
            session,
            can_decide=session.caller.role >= Role.RESPONDER,
            incident=detail.incident,
            actions=detail.actions,
            view=view,
            max_pictures=MAX_PICTURES,
        )

    @router.post("/incidents/{incident_id}/ack")
    async def acknowledge(request: Request, incident_id: ObjectId) -> Response:
        async def act(caller: ApiToken) -> str:
            await desk.acknowledge(incident_id, by=caller.name)
            return "acknowledged"

        return await page.decide(request, act, f"/ui/incidents/{incident_id}")

    @router.post("/incidents/{incident_id}/resolve")
    async def resolve(request: Request, incident_id: ObjectId) -> Response:
        async def act(caller: ApiToken) -> str:
            await desk.resolve(incident_id, by=caller.name)
            return "resolved"

        return await page.decide(request, act, f"/ui/incidents/{incident_id}")

    @router.post("/approvals/{action_id}/{verdict}")
    async def approval(request: Request, action_id: ObjectId, verdict: str) -> Response:
        if verdict not in ("approve", "reject"):
            return Response(status_code=404)

        async def act(caller: ApiToken) -> str:
            await desk.decide_step(executor, action_id, approve=verdict == "approve", by=caller.name)
            return "approved" if verdict == "approve" else "rejected"

        record = await executor.load(action_id)
        back = f"/ui/incidents/{record.incident_id}" if record is not None else "/ui/"
        return await page.decide(request, act, back)

    return router
