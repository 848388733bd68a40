"""The ``grafana_annotate`` action: annotations through Grafana's HTTP API (``/api/annotations``).

Every annotation is tagged ``aiops``, ``aiops-incident:<incident id>`` and ``aiops-action:<action id>``, besides
the playbook's own tags. The action tag is the idempotency key: ``applied`` searches for it, a repeated
``execute`` finds the annotation and adds no second one, and ``undo`` deletes what carries it. The incident tag
lets a dashboard's annotation query (filter by tags) show all that the engine did for one incident.

Grafana stores a ``key:value`` tag as a pair, trimming spaces around both halves and dropping what follows a
second colon; incident and action IDs have no colons and no outer spaces, so the engine's tags come back unchanged.

The service account needs the annotations read, write and delete permissions (the Editor role has them). Grafana's
answers map onto the engine's errors here: 401, 403, 400 and other refusals are permanent; 409, 429, 5xx,
timeouts and connection failures are temporary.
"""

from __future__ import annotations

from typing import Any

import httpx

from engine.adapters.actions.failures import error_for_status
from engine.adapters.grafana_http import GrafanaAddress, grafana_headers, grafana_reason
from engine.core.actions.catalogue import ActionParams, GrafanaAnnotateParams
from engine.domain.clock import Clock, SystemClock
from engine.domain.errors import PermanentError, TemporaryError
from engine.domain.events import ActionRequest

# Grafana answers at most this many annotations per search; one action makes one.
_SEARCH_LIMIT = 100


def action_tag(request_id: str) -> str:
    return f"aiops-action:{request_id}"


def incident_tag(incident_id: str) -> str:
    return f"aiops-incident:{incident_id}"


class GrafanaAnnotations:
    """Backend for ``grafana_annotate``; owns one HTTP connection pool, released by ``aclose``."""

    def __init__(self, url: str, token: str, *, timeout_s: float = 10.0, clock: Clock | None = None) -> None:
        address = GrafanaAddress.parse(url)
        self._where = address.where
        self._client = httpx.AsyncClient(
            base_url=address.base_url,
            headers=grafana_headers(token),
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
        now_ms = int(self._clock.now() * 1000)
        # Without dashboardUID the annotation belongs to the organization and shows wherever its tags are queried.
        body: dict[str, Any] = {"time": now_ms, "timeEnd": now_ms, "tags": tags, "text": annotate.text}
        if annotate.dashboard_uid:
            body["dashboardUID"] = annotate.dashboard_uid
        added = await self._json("add an annotation", "POST", "api/annotations", json=body)
        annotation_id = added.get("id") if isinstance(added, dict) else None
        if not isinstance(annotation_id, int):
            raise PermanentError("add an annotation: Grafana answered without an annotation ID")
        return f"added annotation {annotation_id} on {where}: {annotate.text}"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        _annotate_params(params)
        existing = await self._ours(request.id)
        if not existing:
            return "no annotation made by this action is left; nothing to delete"
        for annotation in existing:
            annotation_id = annotation["id"]
            # A 404 means someone deleted it between the search and now: the goal is reached all the same.
            await self._send(
                f"delete annotation {annotation_id}", "DELETE", f"api/annotations/{annotation_id}", allow_not_found=True
            )
        return f"deleted annotation {_ids(existing)}"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        _annotate_params(params)
        return bool(await self._ours(request.id))

    async def _ours(self, request_id: str) -> list[dict[str, Any]]:
        """The annotations carrying ``request_id``'s action tag (user annotations only, not alert state changes)."""
        tag = action_tag(request_id)
        query = {"tags": tag, "type": "annotation", "limit": _SEARCH_LIMIT}
        found = await self._json("search annotations", "GET", "api/annotations", params=query)
        if not isinstance(found, list):
            raise PermanentError("search annotations: Grafana answered something other than a list")
        # Grafana already filtered by the tag; checking again keeps a server that ignores the filter harmless.
        return [
            item
            for item in found
            if isinstance(item, dict) and isinstance(item.get("id"), int) and tag in (item.get("tags") or [])
        ]

    async def _json(self, what: str, method: str, path: str, **kwargs: Any) -> object:
        reply = await self._send(what, method, path, **kwargs)
        try:
            body: object = reply.json()
        except ValueError as exc:
            # A body that is not JSON: a proxy's error page, or not Grafana at all.
            raise PermanentError(f"{what}: Grafana's answer is not JSON") from exc
        return body

    async def _send(
        self, what: str, method: str, path: str, *, allow_not_found: bool = False, **kwargs: Any
    ) -> httpx.Response:
        try:
            reply = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: Grafana did not answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(f"{what}: cannot reach Grafana at {self._where} ({exc.__class__.__name__})") from exc
        if reply.is_success or (allow_not_found and reply.status_code == 404):
            return reply
        error = error_for_status(reply.status_code, what)
        reason = grafana_reason(reply)
        raise type(error)(f"{error}; Grafana said: {reason}" if reason else str(error))


def _annotate_params(params: ActionParams) -> GrafanaAnnotateParams:
    if not isinstance(params, GrafanaAnnotateParams):
        raise PermanentError(f"the Grafana backend cannot carry out {type(params).__name__}")
    return params


def _ids(annotations: list[dict[str, Any]]) -> str:
    return ", ".join(str(annotation["id"]) for annotation in annotations)
