"""What on-call people do to incidents: acknowledge, unacknowledge, resolve, comment and snooze.

Decisions are made durable first (the store refuses a decision that no longer applies, e.g. acknowledging a
resolved incident, or the second of two concurrent acknowledgements), together with the PagerDuty event they call
for (``engine.core.paging``), then the live incident tracking is told.
"""

from __future__ import annotations

from engine.core.actions.executor import StepDecider
from engine.core.correlation import CorrelationRules
from engine.core.incidents import IncidentManager
from engine.core.paging import IncidentPager
from engine.core.ports import IncidentDecisions
from engine.domain.clock import Clock
from engine.domain.errors import ConflictError
from engine.domain.events import ActionResult, Incident, IncidentState

_OPEN = frozenset({IncidentState.OPEN})
_ACKNOWLEDGED = frozenset({IncidentState.ACKNOWLEDGED})
_ACTIVE = frozenset({IncidentState.OPEN, IncidentState.ACKNOWLEDGED})
# A snooze silences escalation; one that outlasts a week is a forgotten incident, not a decision.
MAX_SNOOZE_S = 7 * 86400.0


class IncidentDesk:
    def __init__(
        self,
        decisions: IncidentDecisions,
        manager: IncidentManager,
        clock: Clock,
        pager: IncidentPager | None = None,
    ) -> None:
        self._decisions = decisions
        self._manager = manager
        self._clock = clock
        self._pager = pager

    @property
    def rules(self) -> CorrelationRules:
        """The correlation rules in force (they rank an incident's probable cause)."""
        return self._manager.rules

    async def acknowledge(self, incident_id: str, *, by: str, comment: str = "") -> Incident:
        return await self._decide(incident_id, _OPEN, IncidentState.ACKNOWLEDGED, "acknowledged", by, comment)

    async def unacknowledge(self, incident_id: str, *, by: str, comment: str = "") -> Incident:
        return await self._decide(incident_id, _ACKNOWLEDGED, IncidentState.OPEN, "unacknowledged", by, comment)

    async def resolve(self, incident_id: str, *, by: str, comment: str = "") -> Incident:
        incident = await self._decide(incident_id, _ACTIVE, IncidentState.RESOLVED, "resolved", by, comment)
        self._manager.forget(incident_id)
        return incident

    async def comment(self, incident_id: str, *, by: str, comment: str) -> Incident:
        return await self._decisions.annotate_incident(
            incident_id, kind="commented", by=by, comment=comment, at=self._clock.now()
        )

    async def snooze(self, incident_id: str, *, until: float, by: str, comment: str = "") -> Incident:
        now = self._clock.now()
        if until <= now:
            raise ConflictError("a snooze must end in the future")
        if until > now + MAX_SNOOZE_S:
            raise ConflictError(f"a snooze may last at most {MAX_SNOOZE_S / 86400:.0f} days")
        return await self._decisions.annotate_incident(
            incident_id, kind="snoozed", by=by, comment=comment, at=now, snoozed_until=until
        )

    async def decide_step(
        self, executor: StepDecider, action_id: str, *, approve: bool, by: str, comment: str = ""
    ) -> ActionResult:
        """A person's approval or rejection of a waiting step, also recorded in its incident's timeline. A step of a
        resolved incident may still be rejected but no longer approved: what it was planned to fix is over, and
        running it now would act on a system that has moved on (ConflictError)."""
        if approve:
            planned = await executor.load(action_id)
            if planned is not None and await self._decisions.resolved_among([planned.incident_id]):
                raise ConflictError(
                    f"incident {planned.incident_id} is resolved; its step {action_id} can only be rejected"
                )
        result = await executor.decide(action_id, approve=approve, by=by, comment=comment)
        request = result.request
        step = f"{request.action} ({request.playbook}, step {request.step + 1})"
        await self._decisions.annotate_incident(
            request.incident_id,
            kind="step approved" if approve else "step rejected",
            by=by,
            comment=f"{step}: {comment}" if comment else step,
            at=self._clock.now(),
        )
        return result

    async def _decide(
        self,
        incident_id: str,
        allowed_from: frozenset[IncidentState],
        to: IncidentState,
        kind: str,
        by: str,
        comment: str,
    ) -> Incident:
        at = self._clock.now()
        planned = self._pager.for_decision(incident_id, to, at) if self._pager is not None else []
        return await self._decisions.decide_incident(
            incident_id, allowed_from=allowed_from, to=to, kind=kind, by=by, comment=comment, at=at, planned=planned
        )
