"""The ``alertmanager_silence`` action: silences in Alertmanager, created and expired through its API v2.

Each silence carries the action's idempotency key in its comment, as ``[aiops:<request id>]``. Alertmanager
cannot search silences by comment, so the backend lists them and looks for that marker: this is how ``applied``
tells after a crash whether the silence was created, how a repeated ``execute`` avoids a second silence, and how
``undo`` finds the silence to expire. Only active and pending silences count; an expired one is history.

A silence that has run its course counts as no longer applied: recovering a step after its silence ended would
silence the alerts again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from engine.adapters.actions.failures import error_for_status
from engine.core.actions.catalogue import ActionParams, AlertmanagerSilenceParams
from engine.domain import promql_strings
from engine.domain.clock import Clock, SystemClock
from engine.domain.errors import PermanentError, TemporaryError
from engine.domain.events import ActionRequest

CREATED_BY = "aiops-engine"
# Alertmanager keeps expired silences for a while (5 days by default); they never count as this action's silence.
_IN_FORCE = frozenset({"active", "pending"})


def marker(request_id: str) -> str:
    """The tag that ties a silence to the action request that created it."""
    return f"[aiops:{request_id}]"


class AlertmanagerSilences:
    """Backend for ``alertmanager_silence``; owns one HTTP connection pool, released by ``aclose``."""

    def __init__(
        self,
        url: str,
        *,
        basic_auth: tuple[str, str] | None = None,
        bearer_token: str | None = None,
        timeout_s: float = 10.0,
        clock: Clock | None = None,
    ) -> None:
        if basic_auth is not None and bearer_token is not None:
            raise ValueError("give either basic_auth or bearer_token, not both")
        headers = {"User-Agent": CREATED_BY}
        if bearer_token is not None:
            headers["Authorization"] = f"Bearer {bearer_token}"
        self._url = url.rstrip("/")
        self._timeout_s = timeout_s
        self._clock = clock or SystemClock()
        self._client = httpx.AsyncClient(
            base_url=self._url, auth=basic_auth, headers=headers, timeout=timeout_s, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> AlertmanagerSilences:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        silence = _silence_params(params)
        labels = _selector(silence.matchers)
        existing = await self._in_force(request.id)
        if existing:
            until = _until(existing[0])
            return f"silence {_ids(existing)} for {labels} is already in place until {until}; not created again"
        now = self._clock.now()
        ends = _timestamp(now + silence.duration_s())
        body = {
            "matchers": [
                {"name": name, "value": value, "isRegex": False, "isEqual": True}
                for name, value in sorted(silence.matchers.items())
            ],
            "startsAt": _timestamp(now),
            "endsAt": ends,
            "createdBy": CREATED_BY,
            "comment": (
                f"{silence.comment} (incident {request.incident_id}, playbook {request.playbook}, "
                f"step {request.step}) {marker(request.id)}"
            ),
        }
        what = f"create a silence for {labels}"
        created = await self._json("POST", "/api/v2/silences", what, json=body)
        silence_id = created.get("silenceID") if isinstance(created, dict) else None
        if not isinstance(silence_id, str):
            raise PermanentError(f"{what}: Alertmanager answered without a silence ID")
        return f"created silence {silence_id} for {labels} until {_readable(ends)}"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        labels = _selector(_silence_params(params).matchers)
        existing = await self._in_force(request.id)
        if not existing:
            return f"no silence for {labels} made by this action is in force; nothing to expire"
        for silence in existing:
            # Expiring an already expired silence succeeds, so a retried undo is harmless.
            silence_id = str(silence.get("id"))
            await self._send("DELETE", f"/api/v2/silence/{quote(silence_id, safe='')}", f"expire silence {silence_id}")
        return f"expired silence {_ids(existing)} for {labels}"

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        _silence_params(params)
        return bool(await self._in_force(request.id))

    async def _in_force(self, request_id: str) -> list[dict[str, Any]]:
        """The active or pending silences whose comment carries ``request_id``'s marker."""
        listed = await self._json("GET", "/api/v2/silences", "list silences")
        if not isinstance(listed, list):
            raise PermanentError("list silences: Alertmanager answered something other than a list")
        tag = marker(request_id)
        return [
            silence
            for silence in listed
            if isinstance(silence, dict) and tag in str(silence.get("comment", "")) and _state(silence) in _IN_FORCE
        ]

    async def _json(self, method: str, path: str, what: str, **kwargs: Any) -> object:
        reply = await self._send(method, path, what, **kwargs)
        try:
            body: object = reply.json()
        except ValueError as exc:
            raise PermanentError(f"{what}: Alertmanager's answer is not JSON") from exc
        return body

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            reply = await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: Alertmanager did not answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(
                f"{what}: cannot reach Alertmanager at {self._url} ({exc.__class__.__name__})"
            ) from exc
        if reply.is_success:
            return reply
        error = error_for_status(reply.status_code, what)
        reason = _reason(reply)
        raise type(error)(f"{error}; Alertmanager said: {reason}" if reason else str(error))


def _silence_params(params: ActionParams) -> AlertmanagerSilenceParams:
    if not isinstance(params, AlertmanagerSilenceParams):
        raise PermanentError(f"the Alertmanager backend cannot carry out {type(params).__name__}")
    return params


def _state(silence: dict[str, Any]) -> object:
    status = silence.get("status")
    return status.get("state") if isinstance(status, dict) else None


def _reason(reply: httpx.Response) -> str:
    """Alertmanager's own sentence; its errors are JSON strings, e.g. ``"silence invalid: ..."``."""
    try:
        body = reply.json()
    except ValueError:
        body = reply.text
    return (body if isinstance(body, str) else reply.text).strip()[:300]


def _selector(matchers: dict[str, str]) -> str:
    """The silence's matchers as a PromQL selector, as an SRE would type it into Prometheus or amtool."""
    inner = ", ".join(f"{name}={promql_strings.quote(value)}" for name, value in sorted(matchers.items()))
    return f"{{{inner}}}"


def _ids(silences: list[dict[str, Any]]) -> str:
    return ", ".join(str(silence.get("id")) for silence in silences)


def _until(silence: dict[str, Any]) -> str:
    return _readable(str(silence.get("endsAt", "?")))


def _timestamp(epoch_s: float) -> str:
    """RFC 3339 in UTC with milliseconds, as Alertmanager writes its own timestamps."""
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _readable(timestamp: str) -> str:
    try:
        moment = datetime.fromisoformat(timestamp)
    except ValueError:
        return timestamp
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC"
