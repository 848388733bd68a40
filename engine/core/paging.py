"""The PagerDuty lifecycle of incidents: which Events API v2 event each incident change or on-call decision calls
for, as steps of the action ledger.

An incident that opens is a ``trigger`` event, one that on-call acknowledges an ``acknowledge`` event, one that
resolves (quiet signal, resolved alert, or a person) a ``resolve`` event, all with the incident's id as
``dedup_key``. Unacknowledging sends nothing: PagerDuty merges a trigger with an open ``dedup_key`` into the
alert as it is, acknowledged or not, and the Events API has no event that takes an acknowledgement back.

Why ledger steps and not a queue beside the pipeline: the ledger is where the engine already keeps every side
effect it must not lose or repeat. A lifecycle step is stored in the same transaction as the change or decision
that calls for it (before Kafka offsets are committed, before an acknowledgement is answered), so a crash or a
PagerDuty outage loses none, and a slow or unreachable PagerDuty never holds up ingestion: remediation workers send
the events off the ingest path, with the executor's retries, and each outcome is recorded with the incident's
actions (dry-run and shadow mode record the event that would have been sent). Step ids are derived from (incident,
event), so replicas that see the same change, or a change processed again after a crash, store one step, sent
once; a send repeated after a crash mid-call carries the same ``dedup_key``, which PagerDuty merges into the alert
it already has (a repeated acknowledge or resolve changes nothing there either). The three events of an incident
are steps 0, 1 and 2 of one run, and the ledger never hands out a step while an earlier one of its run is
unfinished: PagerDuty gets them in lifecycle order.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from engine.core.actions.catalogue import PAGERDUTY_SUMMARY_MAX, PagerDutySeverity
from engine.core.playbooks.guards import Guards
from engine.core.playbooks.steps import PlannedStep
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    Severity,
)

PAGERDUTY = "pagerduty"
ACTION = "pagerduty_event"
# Step numbers of one incident's run: the ledger hands them out in this order.
STEPS = {"trigger": 0, "acknowledge": 1, "resolve": 2}
SEVERITIES: Mapping[Severity, PagerDutySeverity] = {
    Severity.CRITICAL: "critical",
    Severity.WARNING: "warning",
    Severity.INFO: "info",
}
# The first of these labels an incident has fills the payload field; PagerDuty groups and filters on them.
SOURCE_LABELS = ("instance", "pod", "node", "host", "deployment", "service", "model", "job")
COMPONENT_LABELS = ("component", "model", "deployment", "service", "container")
GROUP_LABELS = ("group", "namespace", "job", "cluster")
CLASS_LABELS = ("class", "alertname")
# custom_details are shown on every PagerDuty alert and count towards its 512 KB event limit: kept small.
MAX_DETAILS_CHARS = 8192
MAX_DETAIL_VALUE_CHARS = 512


def event_id(incident_id: str, event_action: str) -> str:
    """The ledger id of an incident's lifecycle event: the same on every replica and after every restart."""
    digest = hashlib.sha256(f"{incident_id}|{PAGERDUTY}|{event_action}".encode()).hexdigest()
    return f"pd-{digest[:20]}"


class IncidentPager:
    """Plans the lifecycle events of incidents; ``public_url`` is the engine as people reach it (links)."""

    def __init__(self, *, mode: ActionMode, public_url: str = "") -> None:
        self._mode = mode
        self._public_url = public_url.rstrip("/")

    def for_change(self, change: IncidentChange) -> list[PlannedStep]:
        """What a change the pipeline made calls for: a trigger when it opens an incident, a resolve when it
        resolves one (updates go to PagerDuty as nothing: its alert already says what is wrong)."""
        incident = change.incident
        if change.kind is IncidentChangeKind.OPENED:
            return [self._step(incident.id, "trigger", change.at, self._trigger(change))]
        if change.kind is IncidentChangeKind.RESOLVED:
            return [self._step(incident.id, "resolve", change.at, {})]
        return []

    def for_decision(self, incident_id: str, to: IncidentState, at: float) -> list[PlannedStep]:
        """What a person's decision calls for (stored with the decision itself)."""
        if to is IncidentState.ACKNOWLEDGED:
            return [self._step(incident_id, "acknowledge", at, {})]
        if to is IncidentState.RESOLVED:
            return [self._step(incident_id, "resolve", at, {})]
        return []

    def _step(self, incident_id: str, event_action: str, at: float, extra: Mapping[str, Any]) -> PlannedStep:
        request = ActionRequest.create(
            id=event_id(incident_id, event_action),
            incident_id=incident_id,
            playbook=PAGERDUTY,
            step=STEPS[event_action],
            action=ACTION,
            params={"event_action": event_action, "dedup_key": incident_id, **extra},
            mode=self._mode,
            requested_at=at,
            explanation={"pagerduty": f"the incident's {event_action} event"},
        )
        return PlannedStep(request, Guards())

    def _trigger(self, change: IncidentChange) -> dict[str, Any]:
        incident = change.incident
        labels = incident.series.label_map
        payload: dict[str, Any] = {
            "summary": _clip(incident.title, PAGERDUTY_SUMMARY_MAX),
            "source": _first(labels, SOURCE_LABELS) or incident.series.name,
            "severity": SEVERITIES[incident.severity],
            "component": _first(labels, COMPONENT_LABELS),
            "group": _first(labels, GROUP_LABELS),
            "class": _first(labels, CLASS_LABELS) or incident.series.name,
            "timestamp": datetime.fromtimestamp(incident.opened_at, UTC).isoformat(),
            "custom_details": _details(change),
        }
        params: dict[str, Any] = {"payload": {key: value for key, value in payload.items() if value is not None}}
        if self._public_url:
            href = f"{self._public_url}/ui/incidents/{quote(incident.id, safe='')}"
            params["links"] = [{"href": href, "text": "Incident in aiops-engine"}]
        return params


def _first(labels: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    return next((_clip(labels[name], MAX_DETAIL_VALUE_CHARS) for name in names if labels.get(name)), None)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _details(change: IncidentChange) -> dict[str, Any]:
    incident = change.incident
    details: dict[str, Any] = {
        "incident_id": incident.id,
        "series": _clip(str(incident.series), MAX_DETAIL_VALUE_CHARS),
        "severity": incident.severity.label,
        "signal_count": incident.signal_count,
        "peak_score": _finite(incident.peak_score),
        "labels": {name: _clip(value, MAX_DETAIL_VALUE_CHARS) for name, value in incident.series.labels},
    }
    if change.signal is not None:
        signal = change.signal
        details["signal"] = {
            "value": _finite(signal.value),
            "score": _finite(signal.score),
            "detector": signal.detector,
        }
    if change.alert is not None:
        annotations = change.alert.annotations
        details["annotations"] = {name: _clip(value, MAX_DETAIL_VALUE_CHARS) for name, value in annotations}
    # Labels and annotations are the only parts without a fixed size: past the bound they go, the rest stays.
    for bulky in ("annotations", "labels"):
        if _size(details) <= MAX_DETAILS_CHARS:
            break
        details.pop(bulky, None)
        details["truncated"] = True
    return details


def _size(details: Mapping[str, Any]) -> int:
    return len(json.dumps(details))


def _finite(value: float) -> float | None:
    # JSON has no NaN or infinity: PagerDuty would refuse the whole event for one.
    return value if math.isfinite(value) else None
