"""PagerDuty change events for what the engine changes: each live action that ran (scaled, rolled back,
restarted, silenced...) and each undo is a change event (``POST /v2/change/enqueue``) on the PagerDuty service, so
that responders see on the incident's timeline what the engine did and when.

Change events are context, not pages, and the action ledger already keeps every outcome durably; so unlike the
incident lifecycle (``engine.core.paging``: ledger steps, never lost) they are sent best effort, off the pipeline:
results are put in a bounded queue that one task drains. A full queue (PagerDuty away for long) drops the newest
result instead of slowing the pipeline down or growing without bound, and events still queued when the engine stops
are not sent; both are counted, with every outcome, in ``aiops_pagerduty_change_events_total{outcome}``. 429 and
5xx answers are retried with backoff; a 400 is logged with PagerDuty's reason, never with the routing key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import ValidationError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from engine.adapters.actions.failures import error_for_status
from engine.adapters.actions.pagerduty import EVENTS_URL, USER_AGENT, RoutingKeys, said
from engine.core.actions.catalogue import (
    DEFAULT_ROUTING_KEY,
    PAGERDUTY_SUMMARY_MAX,
    UnknownActionError,
    parse_params,
)
from engine.domain.clock import Clock
from engine.domain.errors import EngineError, PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionResult, ActionStatus, Anomaly, IncidentChange, MetricSample

log = logging.getLogger(__name__)

# Outcomes that mean a system was changed: the action ran (and is being verified, or was), or it was undone.
CHANGED = frozenset({ActionStatus.SUCCEEDED, ActionStatus.VERIFYING, ActionStatus.UNDONE})
# Notifications change nothing a responder would look for on a timeline.
NOTIFICATIONS = frozenset({"webhook_notify", "pagerduty_trigger", "pagerduty_event"})
DEFAULT_CAPACITY = 1000


class PagerDutyChanges:
    """A pipeline observer that turns changing action results into PagerDuty change events; ``run`` sends them."""

    def __init__(
        self,
        keys: RoutingKeys,
        registry: CollectorRegistry,
        clock: Clock,
        *,
        url: str = EVENTS_URL,
        public_url: str = "",
        timeout_s: float = 10.0,
        attempts: int = 3,
        capacity: int = DEFAULT_CAPACITY,
    ) -> None:
        self._keys = keys
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._timeout_s = timeout_s
        self._attempts = attempts
        self._queue: asyncio.Queue[ActionResult] = asyncio.Queue(maxsize=capacity)
        self._client = httpx.AsyncClient(
            base_url=url.rstrip("/"), headers={"User-Agent": USER_AGENT}, timeout=timeout_s, follow_redirects=False
        )
        self.outcomes = Counter(
            "aiops_pagerduty_change_events",
            "PagerDuty change events for the engine's actions, by outcome (sent; failed: refused or PagerDuty away "
            "past the retries; dropped: the queue was full)",
            ["outcome"],
            registry=registry,
        )
        for outcome in ("sent", "failed", "dropped"):
            self.outcomes.labels(outcome)

    async def aclose(self) -> None:
        await self._client.aclose()

    # -- the pipeline observer: only actions matter here -----------------------------------------------------

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        return None

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return None

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        return None

    def on_incident_change(self, change: IncidentChange) -> None:
        return None

    def on_action(self, result: ActionResult) -> None:
        request = result.request
        if result.status not in CHANGED or request.mode is not ActionMode.LIVE or request.action in NOTIFICATIONS:
            return
        try:
            self._queue.put_nowait(result)
        except asyncio.QueueFull:
            self.outcomes.labels("dropped").inc()

    # -- sending ---------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Send queued events one at a time, until cancelled."""
        while True:
            result = await self._queue.get()
            try:
                await self._send(result)
            except EngineError as exc:
                self.outcomes.labels("failed").inc()
                log.warning("PagerDuty change event for %s not sent: %s", result.request.id, exc)
            else:
                self.outcomes.labels("sent").inc()

    async def _send(self, result: ActionResult) -> None:
        body = {"routing_key": self._keys.key(DEFAULT_ROUTING_KEY), **change_event(result, self._public_url)}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=1.0, max=30.0),
            retry=retry_if_exception_type(TemporaryError),
            sleep=self._clock.sleep,
            reraise=True,
        )
        await retrying(self._post, body)

    async def _post(self, body: dict[str, Any]) -> None:
        what = "PagerDuty change event"
        try:
            reply = await self._client.post("/v2/change/enqueue", json=body)
        except httpx.TimeoutException as exc:
            raise TemporaryError(f"{what}: no answer within {self._timeout_s:g}s") from exc
        except httpx.TransportError as exc:
            raise TemporaryError(self._keys.redact(f"{what}: cannot reach PagerDuty ({exc!r})")) from exc
        if reply.status_code == 202:
            return
        error = error_for_status(reply.status_code, what)
        if isinstance(error, TemporaryError):
            raise error
        raise PermanentError(
            f"{what}: PagerDuty refused it (HTTP {reply.status_code}): {self._keys.redact(said(reply))}"
        )


def change_event(result: ActionResult, public_url: str = "") -> dict[str, Any]:
    """The change event (without its routing key) for one result: what ran, on what, and how it ended."""
    request = result.request
    try:
        target = parse_params(request.action, request.params).target()
    except (UnknownActionError, ValidationError):
        target = request.action
    summary = f"aiops-engine {request.action} on {target}: {result.status.value}"
    event: dict[str, Any] = {
        "payload": {
            "summary": summary[:PAGERDUTY_SUMMARY_MAX],
            "timestamp": datetime.fromtimestamp(result.finished_at, UTC).isoformat(),
            "source": "aiops-engine",
            "custom_details": {
                "action": request.action,
                "target": target,
                "outcome": result.status.value,
                "detail": result.detail[:PAGERDUTY_SUMMARY_MAX],
                "incident_id": request.incident_id,
                "playbook": request.playbook,
                "step": request.step + 1,
                "action_id": request.id,
            },
        }
    }
    if public_url:
        href = f"{public_url}/ui/incidents/{quote(request.incident_id, safe='')}"
        event["links"] = [{"href": href, "text": "Incident in aiops-engine"}]
    return event
