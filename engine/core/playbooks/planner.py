"""Decides which playbook steps an incident change calls for, as idempotent action requests.

A playbook that cannot be planned for an incident (a template or condition that fails, whatever the error) yields
one failed step saying why, stored and shown like any other; the other playbooks are planned as usual.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from jinja2 import TemplateError

from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.playbooks.expressions import ConditionError, evaluate_condition
from engine.core.playbooks.model import Playbook, Trigger
from engine.core.playbooks.steps import PlannedStep
from engine.core.playbooks.templating import render_params
from engine.core.playbooks.verification import PendingVerification
from engine.core.probable_cause import Cause, rank_causes
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    SeriesKey,
)

# From most to least cautious: the effective mode of a step is the most cautious of the global and playbook mode.
_CAUTION = (ActionMode.DRY_RUN, ActionMode.SHADOW, ActionMode.LIVE)


def effective_mode(global_mode: ActionMode, playbook_mode: ActionMode | None) -> ActionMode:
    if playbook_mode is None:
        return global_mode
    return min(global_mode, playbook_mode, key=_CAUTION.index)


def request_id(incident_id: str, playbook: str, step: int) -> str:
    digest = hashlib.sha256(f"{incident_id}|{playbook}|{step}".encode()).hexdigest()
    return f"act-{digest[:20]}"


def template_context(
    incident: Incident, rules: CorrelationRules = NO_RULES, matched: SeriesKey | None = None
) -> dict[str, Any]:
    """What ``{{ incident.* }}`` can see. ``series`` and ``labels`` are those of the signal the trigger matched
    (the incident's opening signal unless one that joined it matched); ``signals`` lists every signal and
    ``cause`` is the probable cause (``engine.core.probable_cause``), each with its series, name, labels, kind and
    figures."""
    series = matched or incident.series
    causes = rank_causes(incident.signals, rules)
    return {
        "incident": {
            "id": incident.id,
            "title": incident.title,
            "severity": incident.severity.label,
            "series": series.name,
            "labels": series.label_map,
            "opened_at": incident.opened_at,
            "peak_score": incident.peak_score,
            "signal_count": incident.signal_count,
            "signals": [_signal_context(cause) for cause in causes],
            "cause": _signal_context(causes[0]) if causes else None,
        }
    }


def _signal_context(cause: Cause) -> dict[str, Any]:
    signal = cause.signal
    return {
        "series": str(signal.series),
        "name": signal.series.name,
        "labels": signal.series.label_map,
        "kind": cause.kind,
        "rank": cause.rank,
        "reasons": list(cause.reasons),
        "first_at": signal.first_at,
        "peak_score": signal.peak_score,
        "peak_value": signal.peak_value,
        "active": signal.active,
    }


def probable_cause(incident: Incident, rules: CorrelationRules) -> SeriesKey | None:
    causes = rank_causes(incident.signals, rules)
    return causes[0].signal.series if causes else None


class PlanningError(ValueError):
    """A step's templates could not be rendered for this incident."""


class Planner:
    """Decides, per incident change, which playbooks fire; each playbook fires at most once per incident."""

    def __init__(
        self, playbooks: Sequence[Playbook], global_mode: ActionMode, rules: CorrelationRules = NO_RULES
    ) -> None:
        self._playbooks = tuple(playbooks)
        self._global_mode = global_mode
        # Which kinds and relations rank an incident's probable cause, for triggers on it and for templates.
        self.rules = rules
        # (incident id, playbook name) pairs already planned; the action ledger makes this durable, this set
        # only saves asking it again for every signal of a long incident.
        self._fired: set[tuple[str, str]] = set()

    @property
    def playbooks(self) -> tuple[Playbook, ...]:
        return self._playbooks

    def replace_playbooks(self, playbooks: Sequence[Playbook]) -> None:
        """Swap the whole set at once; requests being planned keep the set they started with."""
        self._playbooks = tuple(playbooks)

    def plan(self, change: IncidentChange) -> list[PlannedStep]:
        """The requests that this change of an incident calls for (none once the incident is resolved)."""
        incident = change.incident
        if change.kind is IncidentChangeKind.RESOLVED:
            self._fired = {key for key in self._fired if key[0] != incident.id}
            return []
        cause = probable_cause(incident, self.rules)
        requests: list[PlannedStep] = []
        for playbook in self._playbooks:
            if (incident.id, playbook.name) in self._fired:
                continue
            try:
                matched = playbook.matching_trigger(incident, cause)
                if matched is None:
                    continue
                context = template_context(incident, self.rules, matched[1])
                if not self._fires(playbook, change, context, matched[0]):
                    continue
                steps = self._requests(playbook, change, context, matched)
            except Exception as exc:  # any error of one playbook (any type) fails that playbook only
                steps = [self._not_planned(playbook, change, exc)]
            self._fired.add((incident.id, playbook.name))
            requests += steps
        return requests

    def _not_planned(self, playbook: Playbook, change: IncidentChange, error: Exception) -> PlannedStep:
        """The playbook's first step, failed with the reason, so that the incident's actions say why nothing ran."""
        incident = change.incident
        reason = str(error) if isinstance(error, PlanningError) else f"playbook {playbook.name}: {error!r}"
        request = ActionRequest.create(
            id=request_id(incident.id, playbook.name, 0),
            incident_id=incident.id,
            playbook=playbook.name,
            step=0,
            action=playbook.steps[0].action,
            params={},
            mode=effective_mode(self._global_mode, playbook.mode),
            requested_at=change.at,
            explanation={"not_planned": reason[:2000]},
        )
        return PlannedStep(request, playbook.guards, failure=f"not planned: {reason}"[:2000])

    def _fires(self, playbook: Playbook, change: IncidentChange, context: dict[str, Any], trigger: Trigger) -> bool:
        if change.at - change.incident.opened_at < trigger.for_:
            return False
        try:
            return all(evaluate_condition(condition, context) for condition in playbook.conditions)
        except ConditionError as exc:
            raise PlanningError(f"playbook {playbook.name}: {exc}") from exc

    @staticmethod
    def _explain(
        playbook: Playbook, change: IncidentChange, matched: tuple[Trigger, SeriesKey], context: dict[str, Any]
    ) -> dict[str, Any]:
        incident = change.incident
        trigger, series = matched
        cause = context["incident"]["cause"]
        explanation: dict[str, Any] = {
            "trigger": trigger.model_dump(mode="json", by_alias=True),
            "matched_series": str(series),
            "probable_cause": None if cause is None else {"series": cause["series"], "reasons": cause["reasons"]},
            "conditions": list(playbook.conditions),
            "incident": {
                "series": str(incident.series),
                "severity": incident.severity.label,
                "peak_score": incident.peak_score,
                "signals": incident.signal_count,
                "open_for_s": change.at - incident.opened_at,
            },
        }
        if change.signal is not None:
            explanation["signal"] = {
                "value": change.signal.value,
                "score": change.signal.score,
                "detector": change.signal.detector,
            }
        return explanation

    def _requests(
        self,
        playbook: Playbook,
        change: IncidentChange,
        context: dict[str, Any],
        matched: tuple[Trigger, SeriesKey],
    ) -> list[PlannedStep]:
        incident = change.incident
        mode = effective_mode(self._global_mode, playbook.mode)
        explanation = self._explain(playbook, change, matched, context)
        requests = []
        for index, step in enumerate(playbook.steps):
            try:
                params = render_params(step.params, context)
            except TemplateError as exc:
                raise PlanningError(f"playbook {playbook.name} step {index + 1}: {exc}") from exc
            request = ActionRequest.create(
                id=request_id(incident.id, playbook.name, index),
                incident_id=incident.id,
                playbook=playbook.name,
                step=index,
                action=step.action,
                params=params,
                mode=mode,
                requested_at=change.at,
                approval_timeout_s=step.approval_timeout if step.approval == "required" else None,
                explanation=explanation,
            )
            verification = (
                PendingVerification(request, step.verify, matched[1], context, change.at, step.undo)
                if step.verify is not None
                else None
            )
            requests.append(PlannedStep(request, playbook.guards.overridden_by(step.guards), verification))
        return requests
