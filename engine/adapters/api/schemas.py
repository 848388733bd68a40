"""The API's response bodies; they are the published OpenAPI contract, separate from the internal values."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel

from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.probable_cause import cause_documents
from engine.domain.events import Incident
from engine.domain.views import ActionRecord, IncidentDetail, TimelineEntry


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


class IncidentOut(BaseModel):
    id: str
    title: str
    state: str
    severity: str
    series: str
    labels: dict[str, str]
    opened_at: datetime
    last_signal_at: datetime
    resolved_at: datetime | None
    signal_count: int
    peak_score: float
    snoozed_until: datetime | None = None

    @classmethod
    def of(cls, incident: Incident) -> IncidentOut:
        return cls(**incident_fields(incident))


def incident_fields(incident: Incident) -> dict[str, Any]:
    """The fields of ``IncidentOut`` for ``incident``, as plain values."""
    return {
        "id": incident.id,
        "title": incident.title,
        "state": incident.state.value,
        "severity": incident.severity.label,
        "series": incident.series.name,
        "labels": incident.series.label_map,
        "opened_at": datetime.fromtimestamp(incident.opened_at, tz=UTC),
        "last_signal_at": datetime.fromtimestamp(incident.last_signal_at, tz=UTC),
        "resolved_at": _time(incident.resolved_at),
        "signal_count": incident.signal_count,
        "peak_score": incident.peak_score,
        "snoozed_until": _time(incident.snoozed_until),
    }


def incident_page_json(incidents: Iterable[Incident]) -> bytes:
    """A page of incidents as the JSON body of a ``list[IncidentOut]`` response, written straight from plain
    values: building and serialising fifty models was most of a list request's cost. orjson writes the same
    JSON as pydantic for these types (UTC times with a ``Z``); a test holds the two to the same output."""
    return orjson.dumps([incident_fields(incident) for incident in incidents], option=orjson.OPT_UTC_Z)


class TimelineEntryOut(BaseModel):
    at: datetime
    kind: str
    detail: dict[str, Any]

    @classmethod
    def of(cls, entry: TimelineEntry) -> TimelineEntryOut:
        return cls(at=datetime.fromtimestamp(entry.at, tz=UTC), kind=entry.kind, detail=entry.detail)


class ActionOut(BaseModel):
    id: str
    incident_id: str
    playbook: str
    step: int
    action: str
    params: dict[str, Any]
    mode: str
    status: str | None
    detail: str | None
    requested_at: datetime
    finished_at: datetime | None
    approval_due_at: datetime | None
    decided_by: str | None
    explanation: dict[str, Any]

    @classmethod
    def of(cls, record: ActionRecord) -> ActionOut:
        return cls(
            id=record.id,
            incident_id=record.incident_id,
            playbook=record.playbook,
            step=record.step,
            action=record.action,
            params=record.params,
            mode=record.mode.value,
            status=record.status,
            detail=record.detail,
            requested_at=datetime.fromtimestamp(record.requested_at, tz=UTC),
            finished_at=_time(record.finished_at),
            approval_due_at=_time(record.approval_due_at),
            decided_by=record.decided_by,
            explanation=record.explanation,
        )


class IncidentDetailOut(IncidentOut):
    timeline: list[TimelineEntryOut]
    actions: list[ActionOut]
    # The incident's signals ranked from the probable cause down, each with its rank, kind and the reasons.
    causes: list[dict[str, Any]]

    @classmethod
    def of_detail(cls, detail: IncidentDetail, rules: CorrelationRules = NO_RULES) -> IncidentDetailOut:
        return cls(
            **IncidentOut.of(detail.incident).model_dump(),
            timeline=[TimelineEntryOut.of(e) for e in detail.timeline],
            actions=[ActionOut.of(a) for a in detail.actions],
            causes=cause_documents(detail.incident.signals, rules),
        )


class Health(BaseModel):
    status: str
