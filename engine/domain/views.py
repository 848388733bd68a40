"""Read models: what the store hands back to the API and the CLI about incidents and actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.domain.events import ActionMode, Incident


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    at: float
    kind: str
    detail: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ActionRecord:
    id: str
    incident_id: str
    playbook: str
    step: int
    action: str
    params: dict[str, Any]
    mode: ActionMode
    # None while the action is claimed but has not finished.
    status: str | None
    detail: str | None
    requested_at: float
    finished_at: float | None
    approval_due_at: float | None = None
    decided_by: str | None = None
    explanation: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    incident: Incident
    timeline: tuple[TimelineEntry, ...]
    actions: tuple[ActionRecord, ...]
