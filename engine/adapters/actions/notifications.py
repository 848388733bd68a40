"""The ``webhook_notify`` action: one JSON POST to a chat or incident webhook.

``format: slack`` sends ``{"text": message}``, the body of a Slack incoming webhook, which Mattermost and
Rocket.Chat accept too; ``format: teams`` sends a Microsoft Teams Workflows message (``{"type": "message",
"attachments": [...]}``) holding one Adaptive Card (version 1.4, the newest Teams renders everywhere) with the
message, the incident, playbook, step and action ID, and a button to the incident's on-call page when
``AIOPS_PUBLIC_URL`` is set; ``format: json`` sends the message with the incident, playbook, step and action ID.

Delivery is at least once. A webhook cannot be asked what it received, so ``applied`` is always False: a step whose
POST may have been sent just before the engine crashed is sent again on recovery. Every POST carries the header
``Idempotency-Key: <action id>``, the same for every attempt of one step, so receivers that honour it (or a relay
in front of them) can drop the repeat. A notification cannot be taken back, so ``undo`` refuses.

Webhook URLs often hold their secret in the path (Slack's do), so sentences and errors name only the scheme and
host.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from engine.adapters.actions.failures import error_for_status
from engine.core.actions.catalogue import ActionParams, WebhookNotifyParams
from engine.domain.errors import PermanentError, TemporaryError
from engine.domain.events import ActionRequest

USER_AGENT = "aiops-engine"


class WebhookNotifier:
    """Backend for ``webhook_notify``; owns one HTTP connection pool, released by ``aclose``."""

    def __init__(self, *, timeout_s: float = 10.0, public_url: str = "") -> None:
        self._timeout_s = timeout_s
        self._public_url = public_url.rstrip("/")
        self._client = httpx.AsyncClient(headers={"User-Agent": USER_AGENT}, timeout=timeout_s, follow_redirects=False)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> WebhookNotifier:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        notify = _notify_params(params)
        where = _origin(notify.url)
        what = f"notify {where}"
        body: dict[str, Any]
        if notify.format == "slack":
            body = {"text": notify.message}
        elif notify.format == "teams":
            body = teams_message(notify.message, request, self._public_url)
        else:
            body = {
                "message": notify.message,
                "incident_id": request.incident_id,
                "playbook": request.playbook,
                "step": request.step,
                "action_id": request.id,
            }
        try:
            reply = await self._client.post(notify.url, json=body, headers={"Idempotency-Key": request.id})
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentError(f"{what}: the webhook URL cannot be used ({exc})") from exc
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: no answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(f"{what}: cannot reach the webhook ({exc.__class__.__name__})") from exc
        if not reply.is_success:
            raise error_for_status(reply.status_code, what)
        return f"posted a {notify.format} notification to {where} (HTTP {reply.status_code})"

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        raise PermanentError("notifications cannot be undone")

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        _notify_params(params)
        return False


def teams_message(message: str, request: ActionRequest, public_url: str) -> dict[str, Any]:
    """The body a Teams Workflows webhook ("Post to a channel when a webhook request is received") takes."""
    facts = [
        {"title": "Incident", "value": request.incident_id},
        {"title": "Playbook", "value": request.playbook},
        {"title": "Step", "value": str(request.step + 1)},
        {"title": "Action ID", "value": request.id},
    ]
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {"type": "TextBlock", "text": message, "wrap": True, "weight": "Bolder", "size": "Medium"},
            {"type": "FactSet", "facts": facts},
        ],
    }
    if public_url:
        incident_page = f"{public_url}/ui/incidents/{quote(request.incident_id, safe='')}"
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the incident", "url": incident_page}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def _notify_params(params: ActionParams) -> WebhookNotifyParams:
    if not isinstance(params, WebhookNotifyParams):
        raise PermanentError(f"the webhook backend cannot carry out {type(params).__name__}")
    return params


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]  # never the credentials of a user:password@host URL
    return f"{parts.scheme}://{host}"
