"""PagerDuty's Events API v2: the backend of the ``pagerduty_event`` steps the engine plans for each incident's
lifecycle (``engine.core.paging``) and of the playbook action ``pagerduty_trigger``.

Events are POSTed to ``<AIOPS_PAGERDUTY_URL>/v2/enqueue``. PagerDuty answers 202 when it takes an event, 400 when
the event is invalid (its ``message`` and ``errors`` are kept in the step's detail and logged; retrying cannot help),
429 when the routing key sends too fast and 5xx when it is in trouble: those two are temporary, and the executor
retries them with backoff (``AIOPS_ACTION_ATTEMPTS``).

Delivery is at least once, and PagerDuty makes it idempotent: a webhook cannot be asked what it received, so a
step whose POST may have gone out just before a crash is sent again, with the same ``dedup_key``, which PagerDuty
merges into the alert it already has. An acknowledge or resolve event is sent only for an incident whose trigger
event PagerDuty took: PagerDuty would accept one for a ``dedup_key`` it does not know and ignore it, and the step's
record would claim a page was acknowledged that never existed.

Routing keys are secrets: they travel only in the request body, never in a URL, a sentence, a record or a log; any
text that comes back (an error, an exception) is scrubbed of them before it is shown.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx
from pydantic import SecretStr

from engine.adapters.actions.failures import error_for_status
from engine.core.actions.catalogue import (
    DEFAULT_ROUTING_KEY,
    ROUTING_KEY_NAME,
    ActionParams,
    PagerDutyEventParams,
    PagerDutyTriggerParams,
)
from engine.domain.errors import ConfigurationError, EngineError, PermanentError, TemporaryError
from engine.domain.events import ActionRequest

log = logging.getLogger(__name__)

EVENTS_URL = "https://events.pagerduty.com"
USER_AGENT = "aiops-engine"
REDACTED = "[redacted]"
# What is kept of PagerDuty's answer to an invalid event: enough to say what was wrong, not a whole body.
MAX_REPLY_CHARS = 1000

# Whether PagerDuty took the trigger event of an incident (by its dedup_key): asked before an acknowledge or resolve.
TriggerDelivered = Callable[[str], Awaitable[bool]]


class RoutingKeys:
    """The configured routing keys by name: ``default`` (``AIOPS_PAGERDUTY_ROUTING_KEY``) and the named ones of
    ``AIOPS_PAGERDUTY_ROUTING_KEYS`` (``name=key,name=key``). Playbooks name a key, never hold one."""

    def __init__(self, keys: Mapping[str, SecretStr]) -> None:
        self._keys = {name: key for name, key in keys.items() if key.get_secret_value()}

    @classmethod
    def parse(cls, default: SecretStr, named: SecretStr) -> RoutingKeys:
        """ConfigurationError for an entry that is not ``name=key``; the message names the entry by position only."""
        keys = {DEFAULT_ROUTING_KEY: default}
        for number, entry in enumerate(filter(None, named.get_secret_value().split(",")), start=1):
            name, separator, key = entry.strip().partition("=")
            name = name.strip()
            if not separator or not name or not key.strip():
                # The entry itself may hold a key: only its position is named.
                raise ConfigurationError(f"entry {number} is not name=key")
            if not re.fullmatch(ROUTING_KEY_NAME, name):
                raise ConfigurationError(
                    f"entry {number}: a name is a lowercase letter, then at most 30 "
                    "lowercase letters, digits, '-' or '_' (what playbooks can write in routing_key)"
                )
            keys[name] = SecretStr(key.strip())
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def key(self, name: str) -> str:
        try:
            return self._keys[name].get_secret_value()
        except KeyError:
            known = ", ".join(sorted(self._keys)) or "none"
            raise PermanentError(
                f"no PagerDuty routing key named {name!r} is configured (configured: {known})"
            ) from None

    def redact(self, text: str) -> str:
        for key in self._keys.values():
            text = text.replace(key.get_secret_value(), REDACTED)
        return text


class PagerDutyEvents:
    """Backend for ``pagerduty_event`` and ``pagerduty_trigger``; owns one HTTP connection pool (``aclose``)."""

    def __init__(
        self,
        keys: RoutingKeys,
        *,
        trigger_delivered: TriggerDelivered,
        url: str = EVENTS_URL,
        timeout_s: float = 10.0,
    ) -> None:
        self._keys = keys
        self._trigger_delivered = trigger_delivered
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers={"User-Agent": USER_AGENT}, timeout=timeout_s, follow_redirects=False
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        if isinstance(params, PagerDutyEventParams):
            if params.event_action != "trigger" and not await self._trigger_delivered(params.dedup_key):
                return f"nothing sent: PagerDuty has no alert for {params.dedup_key} (its trigger event was not sent)"
            event = _lifecycle_event(params)
            routing = DEFAULT_ROUTING_KEY
        elif isinstance(params, PagerDutyTriggerParams):
            event = _playbook_trigger(params, request)
            routing = params.routing_key
        else:
            raise PermanentError(f"the PagerDuty backend cannot carry out {type(params).__name__}")
        what = f"PagerDuty {event['event_action']} event for {event['dedup_key']}"
        body = {"routing_key": self._keys.key(routing), **event}
        try:
            reply = await self._client.post("/v2/enqueue", json=body)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: no answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(self._keys.redact(f"{what}: cannot reach PagerDuty ({exc!r})")) from exc
        if reply.status_code == 202:
            return f"PagerDuty took the {event['event_action']} event for {event['dedup_key']} (HTTP 202)"
        raise self._refusal(what, reply)

    def _refusal(self, what: str, reply: httpx.Response) -> EngineError:
        error = error_for_status(reply.status_code, what)
        if isinstance(error, TemporaryError):
            log.info("%s", error)
            return error
        reason = self._keys.redact(said(reply))
        log.warning("%s: PagerDuty refused it (HTTP %d): %s", what, reply.status_code, reason)
        return PermanentError(f"{what}: PagerDuty refused it (HTTP {reply.status_code}): {reason}")

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        raise PermanentError("a PagerDuty event cannot be taken back")

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        # PagerDuty cannot be asked what it received; sending again is harmless (same dedup_key).
        return False


def _lifecycle_event(params: PagerDutyEventParams) -> dict[str, Any]:
    event: dict[str, Any] = {"event_action": params.event_action, "dedup_key": params.dedup_key}
    if params.payload is not None:
        event["payload"] = params.payload.model_dump(by_alias=True, exclude_none=True)
        event["client"] = USER_AGENT
    if params.links:
        event["links"] = [link.model_dump() for link in params.links]
    return event


def _playbook_trigger(params: PagerDutyTriggerParams, request: ActionRequest) -> dict[str, Any]:
    return {
        "event_action": "trigger",
        "dedup_key": params.dedup_key or f"{request.incident_id}/{request.playbook}/{request.step}",
        "client": USER_AGENT,
        "payload": {
            "summary": params.summary,
            "source": params.source,
            "severity": params.severity,
            "custom_details": {
                "incident_id": request.incident_id,
                "playbook": request.playbook,
                "step": request.step + 1,
                "action_id": request.id,
            },
        },
    }


def said(reply: httpx.Response) -> str:
    """PagerDuty's explanation of a refusal: ``message`` and ``errors`` of its JSON answer, else the text."""
    try:
        answer = reply.json()
    except ValueError:
        return reply.text[:MAX_REPLY_CHARS] or "(no explanation)"
    if not isinstance(answer, dict):
        return str(answer)[:MAX_REPLY_CHARS]
    errors = answer.get("errors")
    parts = [str(answer.get("message") or "invalid event")]
    if isinstance(errors, list) and errors:
        parts.append("; ".join(str(error) for error in errors))
    return ": ".join(parts)[:MAX_REPLY_CHARS]
