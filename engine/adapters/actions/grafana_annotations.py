"""The ``grafana_annotate`` action: annotations through Grafana's HTTP API (``/api/annotations``).

Every annotation is tagged ``aiops``, ``aiops-incident:<incident id>`` and ``aiops-action:<action id>``, besides
the playbook's own tags. The action tag is the idempotency key: ``applied`` searches for it, a repeated
``execute`` finds the annotation and adds no second one, and ``undo`` deletes what carries it. The incident tag
lets a dashboard's annotation query (filter by tags) show all that the engine did for one incident.

The service account needs the annotations read, write and delete permissions (the Editor role has them). Grafana's
answers map onto the engine's errors here: 401, 403 and other refusals are permanent, 5xx, timeouts and
connection failures are temporary.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx

from engine.adapters.actions.failures import error_for_status
from engine.core.actions.catalogue import ActionParams, GrafanaAnnotateParams
from engine.domain.clock import Clock, SystemClock
from engine.domain.errors import ConfigurationError, PermanentError, TemporaryError
from engine.domain.events import ActionRequest

USER_AGENT = "aiops-engine"
# Grafana answers at most this many annotations per search; one action makes one.
_SEARCH_LIMIT = 100


def action_tag(request_id: str) -> str:
    return f"aiops-action:{request_id}"


def incident_tag(incident_id: str) -> str:
    return f"aiops-incident:{incident_id}"


class GrafanaAnnotations:
    """Backend for ``grafana_annotate``; owns one HTTP connection pool, released by ``aclose``."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0, clock: Clock | None = None) -> None:
        parts = urlsplit(url)
        try:
            port = parts.port
        except ValueError:
            port = -1
        if parts.scheme not in ("http", "https") or not parts.hostname or port == -1:
            raise ConfigurationError(f"the Grafana URL must be http(s)://host[:port][/path], not {url!r}")
        self._where = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        # A trailing slash makes relative paths ("api/annotations") land under a sub-path Grafana is served from.
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/") + "/",
            headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout_s,
            follow_redirects=False,
        )
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> GrafanaAnnotations:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        annotate = _annotate_params(params)
        where = f"dashboard {annotate.dashboard_uid}" if annotate.dashboard_uid else "all dashboards"
        existing = await self._ours(request.id)
        if existing:
            return f"annotation {_ids(existing)} on {where} is already in place; not added again"
        tags = list(dict.fromkeys([*annotate.tags, "aiops", incident_tag(request.incident_id), action_tag(request.id)]))
        body: dict[str, Any] = {"time": int(self._clock.now() * 1000), "tags": tags, "text": annotate.text}
        if annotate.dashboard_uid:
            body["dashboardUID"] = annotate.dashboard_uid
        added = await self._call("add an annotation", "POST", "api/annotations", json=body)
        annotation_id = added.get("id") if isinstance(added, dict) else None
        if annotation_id is None:
            raise PermanentError("add an annotation: Grafana answered without an annotation ID")
        return f"added annotation {annotation_id} on {where}: {annotate.text}"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        _annotate_params(params)
        existing = await self._ours(request.id)
        if not existing:
            return "no annotation made by this action is left; nothing to delete"
        for annotation in existing:
            annotation_id = annotation.get("id")
            try:
                await self._call(f"delete annotation {annotation_id}", "DELETE", f"api/annotations/{annotation_id}")
            except PermanentError as exc:
                # Deleted by someone else between the search and now: the goal is reached all the same.
                if not _is_not_found(exc):
                    raise
        return f"deleted annotation {_ids(existing)}"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        _annotate_params(params)
        return bool(await self._ours(request.id))

    async def _ours(self, request_id: str) -> list[dict[str, Any]]:
        tag = action_tag(request_id)
        query = {"tags": tag, "type": "annotation", "limit": _SEARCH_LIMIT}
        found = await self._call("search annotations", "GET", "api/annotations", params=query)
        if not isinstance(found, list):
            raise PermanentError("search annotations: Grafana answered something other than a list")
        # Grafana already filtered by the tag; checking again keeps a server that ignores the filter harmless.
        return [item for item in found if isinstance(item, dict) and tag in item.get("tags", [])]

    async def _call(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: Grafana did not answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(f"{what}: cannot reach Grafana at {self._where} ({exc.__class__.__name__})") from exc
        if response.is_error:
            error = error_for_status(response.status_code, what)
            reason = _reason(response)
            raise type(error)(f"{error}; Grafana said: {reason}" if reason else str(error)) from _RefusedError(
                response.status_code
            )
        try:
            return response.json()
        except ValueError as exc:
            # A body that is not JSON: a proxy's error page, or not Grafana at all.
            raise PermanentError(f"{what}: Grafana's answer is not JSON") from exc


class _RefusedError(Exception):
    """The status of a refused call, kept as the cause of the engine error raised for it."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def _annotate_params(params: ActionParams) -> GrafanaAnnotateParams:
    if not isinstance(params, GrafanaAnnotateParams):
        raise PermanentError(f"the Grafana backend cannot carry out {type(params).__name__}")
    return params


def _reason(response: httpx.Response) -> str:
    """Grafana's own sentence from an error answer (``{"message": ...}``), if it gave one."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    return str(body.get("message", ""))[:300] if isinstance(body, dict) else ""


def _is_not_found(exc: PermanentError) -> bool:
    cause = exc.__cause__
    return isinstance(cause, _RefusedError) and cause.status == 404


def _ids(annotations: list[dict[str, Any]]) -> str:
    return ", ".join(str(annotation.get("id")) for annotation in annotations)
