"""Escalation of incidents nobody takes: an ack timeout, and a chain of notifications while an incident stays open.

Configured in the playbook directory's ``_policy.yaml`` (``escalation:``) and reloaded with it. Each level of the
chain notifies one target once the incident has been open (unacknowledged) for the level's delay. An acknowledged
incident that is not resolved within ``ack_timeout`` is re-opened, which starts the chain again from its first
level: on-call is told again. A snoozed incident is not escalated until its snooze ends.

Notifications are ``webhook_notify`` action requests whose ids are derived from (incident, the moment it entered
the open state, level), so the action ledger sends each at most once, across restarts and engine replicas, and
every notification is in the audit trail like any other action.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from engine.core.actions.catalogue import WebhookFormat
from engine.core.playbooks.expressions import Duration
from engine.core.ports import IncidentDecisions
from engine.domain.clock import Clock
from engine.domain.errors import ConflictError
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionResult,
    ActionStatus,
    Incident,
    IncidentState,
    Severity,
)

if TYPE_CHECKING:
    # A type only: the playbook guards import this module for the escalation policy, and the executor imports them.
    from engine.core.actions.executor import ActionExecutor

ESCALATION = "escalation"
# Most active incidents looked at per round; the oldest beyond it wait for the next round.
_MOST_PER_ROUND = 1000


class EscalationLevel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    after: Duration = Field(default=0.0, description="how long the incident must have been open and unacknowledged")
    url: str = Field(pattern=r"^https?://", description="where the notification is POSTed")
    format: WebhookFormat = "slack"
    message: str = Field(default="needs a human", min_length=1, description="what the notification says")


class Escalation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ack_timeout: Duration | None = Field(
        default=None, description="re-open (and re-notify) an acknowledged incident not resolved within this time"
    )
    min_severity: Literal["info", "warning", "critical"] = "warning"
    chain: list[EscalationLevel] = Field(default_factory=list, description="notification targets, in order")


class EscalationStore(IncidentDecisions, Protocol):
    async def list_incidents(self, *, state: IncidentState | None = None, limit: int = 100) -> list[Incident]: ...


class Escalator:
    def __init__(
        self,
        store: EscalationStore,
        executor: ActionExecutor,
        clock: Clock,
        policy: Callable[[], Escalation | None],
        mode: ActionMode,
    ) -> None:
        self._store = store
        self._executor = executor
        self._clock = clock
        self._policy = policy
        self._mode = mode

    async def tick(self) -> list[ActionResult]:
        """One round: time out stale acknowledgements, then send every notification that is due."""
        escalation = self._policy()
        if escalation is None:
            return []
        now = self._clock.now()
        if escalation.ack_timeout is not None:
            await self._reopen_stale(escalation.ack_timeout, now)
        results: list[ActionResult] = []
        for incident in await self._store.list_incidents(state=IncidentState.OPEN, limit=_MOST_PER_ROUND):
            results += await self._notify(incident, escalation, now)
        return results

    async def _reopen_stale(self, ack_timeout: float, now: float) -> None:
        for incident in await self._store.list_incidents(state=IncidentState.ACKNOWLEDGED, limit=_MOST_PER_ROUND):
            acknowledged_for = now - _since(incident)
            if acknowledged_for < ack_timeout:
                continue
            try:
                await self._store.decide_incident(
                    incident.id,
                    allowed_from=frozenset({IncidentState.ACKNOWLEDGED}),
                    to=IncidentState.OPEN,
                    kind="ack timed out",
                    by="engine",
                    comment=f"acknowledged {acknowledged_for:.0f}s ago and still not resolved; re-notifying",
                    at=now,
                )
            except ConflictError:
                continue  # resolved or re-acknowledged meanwhile: nothing to do

    async def _notify(self, incident: Incident, escalation: Escalation, now: float) -> Sequence[ActionResult]:
        if incident.severity < Severity.parse(escalation.min_severity):
            return []
        if incident.snoozed_until is not None and incident.snoozed_until > now:
            return []
        since = _since(incident)
        results = []
        for level, target in enumerate(escalation.chain):
            if now - since < target.after:
                break
            request = ActionRequest.create(
                id=f"esc-{incident.id}-{int(since * 1000)}-{level}",
                incident_id=incident.id,
                playbook=ESCALATION,
                step=level,
                action="webhook_notify",
                params={
                    "url": target.url,
                    "format": target.format,
                    "message": f"{incident.title} ({incident.id}): {target.message}; "
                    f"open and unacknowledged for {now - since:.0f}s",
                },
                mode=self._mode,
                requested_at=now,
                explanation={"escalation_level": level + 1, "after_s": target.after, "open_since": since},
            )
            result = await self._executor.execute(request)
            if result.status is not ActionStatus.DUPLICATE:
                results.append(result)
        return results


def _since(incident: Incident) -> float:
    return incident.state_since if incident.state_since is not None else incident.opened_at
