"""Builds the FastAPI application from the store, metrics registry and status provider it is given.

Errors are mapped to HTTP codes in one place (``_install_error_handlers``): unknown objects are 404, a store that
cannot be reached is 503, and invalid input is 422 with the field named. No input should produce a 500.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import make_asgi_app
from sqlalchemy.exc import SQLAlchemyError
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.adapters.api.alert_routes import add_alert_route
from engine.adapters.api.approval_routes import approval_router
from engine.adapters.api.auth import Role, TokenBook, requirement
from engine.adapters.api.cursors import BadCursorError, decode_cursor, encode_cursor
from engine.adapters.api.incident_routes import incident_router
from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.api.ingest_limits import IngestLimits
from engine.adapters.api.otlp_routes import add_otlp_route
from engine.adapters.api.playbook_routes import playbook_router
from engine.adapters.api.readiness import InputClosedError, Readiness, ReadinessCheck
from engine.adapters.api.remote_write_routes import add_remote_write_route
from engine.adapters.api.schemas import ActionOut, Health, IncidentDetailOut, IncidentOut, incident_page_json
from engine.adapters.api.silence_routes import silence_router
from engine.adapters.playbook_reloader import PlaybookReloader
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.adapters.web.pages import page_router
from engine.adapters.web.protection import PageHeaders
from engine.adapters.web.sessions import DEFAULT_LIFETIME_S, PageSessions
from engine.core.actions.executor import StepDecider
from engine.core.alert_feed import AlertFeed
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.detection import SeriesAdmission
from engine.core.incident_desk import IncidentDesk
from engine.core.silences import SilenceDesk
from engine.domain.clock import SystemClock
from engine.domain.errors import ConflictError, NotFoundError
from engine.domain.events import IncidentState

StatusProvider = Callable[[], Mapping[str, Any]]
IncidentId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]


def create_app(
    *,
    store: SqlStore,
    metrics: EngineMetrics,
    status: StatusProvider,
    tokens: TokenBook,
    playbooks: PlaybookReloader | None = None,
    executor: StepDecider | None = None,
    desk: IncidentDesk | None = None,
    ingest: IngestCredentials | None = None,
    alerts: AlertFeed | None = None,
    silences: SilenceDesk | None = None,
    remote_write: PushedSource | None = None,
    page_sessions: PageSessions | None = None,
    ingest_limits: IngestLimits | None = None,
    series: SeriesAdmission | None = None,
    readiness: Mapping[str, ReadinessCheck] | None = None,
) -> FastAPI:
    """``readiness``: checks of servers the engine needs besides its store (the store is always checked)."""
    # FastAPI's own /docs loads its scripts from a CDN, blank without Internet access; this one loads the copy
    # installed with fastapi-offline, served from /docs/assets. ReDoc is left out: it fetches its logo from the
    # Internet whatever it is given.
    app = FastAPIOffline(
        title="aiops-engine",
        summary="Anomaly detection and safe auto-remediation around ML serving",
        version="0.1.0",
        static_url="/docs/assets",
        redoc_url=None,
        # Swagger UI would otherwise send the OpenAPI description to validator.swagger.io.
        swagger_ui_parameters={"validatorUrl": None},
    )
    _install_error_handlers(app)
    # The ingest endpoints exist only once a credential for them is configured: never open by default. They come
    # first because routes are matched in order, and they take the machine traffic (every notification, every
    # remote_write batch) while people's requests are few.
    limits = ingest_limits or IngestLimits()
    if ingest and alerts is not None:
        add_alert_route(app.router, store=store, feed=alerts, credentials=ingest, metrics=metrics.ingest, limits=limits)
    if ingest and remote_write is not None:
        # ``series``: detection, which admits new series within the engine's bound.
        add_remote_write_route(
            app.router, sink=remote_write, credentials=ingest, metrics=metrics.ingest, limits=limits, series=series
        )
        # OTLP/HTTP feeds the same source, within the same bounds.
        add_otlp_route(
            app.router, sink=remote_write, credentials=ingest, metrics=metrics.ingest, limits=limits, series=series
        )
    # Routes, not a mount: a mount answers /metrics with a redirect to /metrics/. Both paths answer directly.
    metrics_app = _AsgiEndpoint(make_asgi_app(registry=metrics.registry))
    for path in ("/metrics", "/metrics/"):
        app.router.routes.append(Route(path, metrics_app, methods=["GET"], include_in_schema=False))
    viewer = [Depends(requirement(tokens, Role.VIEWER))]
    if playbooks is not None:
        app.include_router(playbook_router(playbooks, tokens))
    if executor is not None:
        app.include_router(approval_router(store, executor, tokens, desk))
    if desk is not None:
        app.include_router(incident_router(desk, tokens))
    if silences is not None:
        app.include_router(silence_router(silences, tokens))
    if desk is not None and executor is not None:
        sessions = page_sessions or PageSessions.with_random_key(lifetime_s=DEFAULT_LIFETIME_S, clock=SystemClock())
        app.include_router(page_router(store=store, desk=desk, executor=executor, tokens=tokens, sessions=sessions))
        app.add_middleware(PageHeaders)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """The process is up."""
        return Health(status="ok")

    checks = {"store": store.ping, **(readiness or {})}
    if ingest and alerts is not None:
        # The webhook answers 503 once the pipeline stopped taking alerts (a replay that ended): so does /readyz.
        checks["alerts"] = _taking_alerts(alerts)
    ready = Readiness(checks)

    @app.get(
        "/readyz",
        tags=["health"],
        response_model=Health,
        responses={
            503: {
                "description": "a server the engine needs (its store, its Kafka brokers) cannot be reached, or the "
                "pipeline behind the Alertmanager webhook has finished (``alerts``: ``closed``)"
            }
        },
    )
    async def readyz() -> JSONResponse:
        """The engine can do its work: its store, and the Kafka brokers of a Kafka-fed engine, answer within a
        second, and the Alertmanager webhook (where it exists) still feeds a running pipeline. When not, 503 with each
        check's outcome (``ok``, ``timeout``, ``unreachable``, ``closed``)."""
        outcomes = await ready.probe()
        if all(outcome == "ok" for outcome in outcomes.values()):
            return JSONResponse({"status": "ready"})
        return JSONResponse({"status": "unready", "checks": outcomes}, status_code=503)

    @app.get("/api/v1/status", dependencies=viewer, tags=["engine"])
    async def engine_status() -> dict[str, Any]:
        """Counts of what the running engine has processed so far."""
        return dict(status())

    @app.get("/api/v1/incidents", dependencies=viewer, tags=["incidents"], response_model=list[IncidentOut])
    async def list_incidents(
        state: IncidentState | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
        cursor: Annotated[str | None, Query(max_length=200, description="X-Next-Cursor of the previous page")] = None,
    ) -> Response:
        """Incidents, newest first, optionally only those in one state. A full page carries an ``X-Next-Cursor``
        header; pass it as ``cursor`` for the next page (as fast however deep you go)."""
        try:
            before = decode_cursor(cursor) if cursor is not None else None
        except BadCursorError as exc:
            raise RequestValidationError(
                [{"loc": ("query", "cursor"), "msg": str(exc), "type": "value_error"}]
            ) from exc
        incidents = await store.list_incidents(state=state, limit=limit, offset=offset, before=before)
        # The body is serialised here in one pass (the route still declares its model for the schema): re-checking
        # fifty values the store just built was most of a page's cost.
        response = Response(incident_page_json(incidents), media_type="application/json")
        if len(incidents) == limit:
            response.headers["X-Next-Cursor"] = encode_cursor(incidents[-1])
        return response

    _incident_detail_routes(app, store, lambda: desk.rules if desk is not None else NO_RULES, viewer)

    @app.get("/api/v1/actions", dependencies=viewer, tags=["actions"])
    async def list_actions(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    ) -> list[ActionOut]:
        """Action requests and their outcomes (dry-run records say what would have been called), newest first."""
        return [ActionOut.of(record) for record in await store.list_actions(limit=limit, offset=offset)]

    return app


def _incident_detail_routes(
    app: FastAPI, store: SqlStore, rules: Callable[[], CorrelationRules], viewer: list[Any]
) -> None:
    """One incident: its detail (timeline, actions, ranked causes) and the samples of its signals."""

    @app.get(
        "/api/v1/incidents/{incident_id}",
        dependencies=viewer,
        tags=["incidents"],
        responses={404: {"description": "no such incident"}},
    )
    async def get_incident(incident_id: IncidentId) -> IncidentDetailOut:
        """One incident with its timeline and the actions taken for it."""
        return IncidentDetailOut.of_detail(await store.get_incident(incident_id), rules())

    @app.get(
        "/api/v1/incidents/{incident_id}/points",
        dependencies=viewer,
        tags=["incidents"],
        responses={404: {"description": "no such incident"}},
    )
    async def get_signal_points(incident_id: IncidentId) -> dict[str, list[tuple[float, float]]]:
        """The kept samples of each of the incident's signals (by series), from shortly before its first anomaly
        to the incident's end: what the incident page draws."""
        await store.get_incident(incident_id)  # 404 for an unknown incident
        return await store.signal_points(incident_id)


def _taking_alerts(feed: AlertFeed) -> ReadinessCheck:
    async def check() -> None:
        if feed.closed:
            raise InputClosedError("the pipeline no longer takes alerts")

    return check


class _AsgiEndpoint:
    """An ASGI app as a route's endpoint: Starlette calls a plain function as a request handler instead."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    async def not_found(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    async def store_unavailable(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=503, content={"detail": f"store unavailable: {type(exc).__name__}"})

    async def conflict(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    app.add_exception_handler(NotFoundError, not_found)
    app.add_exception_handler(ConflictError, conflict)
    app.add_exception_handler(SQLAlchemyError, store_unavailable)
    # The database driver's own errors when the server is down (refused connection) or frozen (timed out): not
    # wrapped by SQLAlchemy, and as much an unavailable store as its errors are.
    app.add_exception_handler(OSError, store_unavailable)
