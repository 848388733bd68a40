"""The playbook language as pydantic models: the single definition that validates playbook files and from which
their JSON Schema is generated.

A playbook says which incidents it handles (triggers) and which actions to take (steps). Step parameters may
use ``{{ incident.* }}`` templates, rendered in a sandbox when the step runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

from jinja2 import TemplateSyntaxError
from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, field_validator, model_validator

from engine.core.actions.catalogue import CATALOGUE, UnknownActionError, params_model
from engine.core.playbooks.expressions import Duration, Matcher, compile_condition
from engine.core.playbooks.guards import Allow, Guards
from engine.core.playbooks.templating import compile_template, is_template
from engine.core.playbooks.verification import Verify
from engine.domain.events import ActionMode, Incident, SeriesKey, Severity

SeverityName = Literal["info", "warning", "critical"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Trigger(_Strict):
    """Matches incidents with a signal on a series with this metric name whose labels satisfy every label rule."""

    series: str = Field(min_length=1, description="metric name of the incident's series")
    labels: dict[str, str] = Field(default_factory=dict, description="labels that must be present, exact match")
    matchers: list[Matcher] = Field(
        default_factory=list, description='Prometheus-style label matchers, e.g. model=~"fraud.*", env!="dev"'
    )
    min_severity: SeverityName = "warning"
    for_: Duration = Field(
        default=0.0,
        alias="for",
        description="the incident must have lasted this long, with signals still arriving, before steps run",
    )

    signal: Literal["any", "cause"] = Field(
        default="any",
        description="any: one of the incident's signals (the one that opened it or one that joined it) is on "
        "this series; cause: its probable cause, the signal ranked first, is",
    )

    def matches(self, incident: Incident, cause: SeriesKey | None = None) -> bool:
        """Whether the incident is of the kind this trigger is about (ignoring ``for``)."""
        return self.matched_series(incident, cause) is not None

    def matched_series(self, incident: Incident, cause: SeriesKey | None = None) -> SeriesKey | None:
        """The series of ``incident`` this trigger matches (its opening series first), None if none does.
        ``cause``: the series of the incident's probable cause."""
        if incident.severity < Severity.parse(self.min_severity):
            return None
        if self.signal == "cause":
            return cause if cause is not None and self.matches_series(cause) else None
        if self.matches_series(incident.series):
            return incident.series
        return next((s.series for s in incident.signals if self.matches_series(s.series)), None)

    def matches_series(self, series: SeriesKey) -> bool:
        """Whether an incident on ``series`` could match (its metric name and labels; severity aside)."""
        if series.name != self.series:
            return False
        labels = series.label_map
        if any(labels.get(key) != value for key, value in self.labels.items()):
            return False
        return all(matcher.matches(labels) for matcher in self.matchers)


class Step(_Strict):
    """One action with its parameters."""

    action: str = Field(min_length=1, json_schema_extra={"enum": list[JsonValue](sorted(CATALOGUE))})
    params: dict[str, Any] = Field(
        default_factory=dict, description="the action's parameters; strings may use {{ incident.* }} templates"
    )
    guards: Guards | None = Field(default=None, description="overrides the playbook's guards for this step")
    approval: Literal["required", "none"] = Field(
        default="none", description="required: the step waits, visible in the API, until someone approves it"
    )
    approval_timeout: Duration = Field(default=3600.0, description="how long a step waits for approval")
    verify: Verify | None = Field(default=None, description="a condition the signal must meet after the action")
    undo: bool = Field(default=True, description="undo the action (if it can be undone) when verification fails")

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        try:
            params_model(action)
        except UnknownActionError as exc:
            raise ValueError(str(exc)) from exc
        return action

    @model_validator(mode="after")
    def _known_params(self) -> Step:
        allowed = params_model(self.action).model_fields
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)} for action {self.action!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        for value in _strings(self.params):
            if is_template(value):
                try:
                    compile_template(value)
                except TemplateSyntaxError as exc:
                    shown = value if len(value) <= 200 else f"{value[:200]}..."
                    raise ValueError(f"bad template {shown!r}: {exc.message}") from exc
        problems = _literal_problems(self.action, self.params)
        if problems:
            raise ValueError(f"invalid parameters for {self.action}: {'; '.join(problems)}")
        return self


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _literal_problems(action: str, params: dict[str, Any]) -> list[str]:
    """What the action's parameter model finds wrong with the parameters written literally (``replicas: 0``):
    known at load time, whatever the incident. Templated parameters are checked once rendered."""
    templated = {key for key, value in params.items() if any(is_template(s) for s in _strings(value))}
    try:
        params_model(action).model_validate(
            {key: _PLACEHOLDER if key in templated else value for key, value in params.items()}
        )
    except ValidationError as exc:
        errors = exc.errors()
        # A model-wide rule (bounds that compare two fields) runs only when every field parsed; one that ran
        # over a placeholder says nothing, so only errors about literal fields count.
        return [
            f"{'.'.join(str(part) for part in error['loc']) or 'parameters'}: {error['msg']}"
            for error in errors
            if (error["loc"] and error["loc"][0] not in templated) or (not error["loc"] and not templated)
        ]
    return []


# Stands in for a templated parameter when the literal ones are checked; its own errors are ignored.
_PLACEHOLDER = "rendered-later"


class Playbook(_Strict):
    """A named remediation: when one of its triggers matches an opened incident, its steps run in order."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    description: str = ""
    mode: ActionMode | None = Field(default=None, description="overrides the global mode only to be more cautious")
    triggers: list[Trigger] = Field(min_length=1, description="the playbook runs when any trigger matches")
    guards: Guards = Field(default_factory=Guards, description="cooldown, budget and allowlist per target")
    conditions: list[str] = Field(
        default_factory=list,
        description="expressions over the incident that must all hold, e.g. incident.peak_score > 0.99",
    )
    steps: list[Step] = Field(min_length=1)

    @field_validator("conditions")
    @classmethod
    def _conditions_compile(cls, conditions: list[str]) -> list[str]:
        for condition in conditions:
            compile_condition(condition)
        return conditions

    def series_names(self) -> set[str]:
        """Metric names whose recent samples verification of this playbook's steps may need."""
        names = set()
        for step in self.steps:
            if step.verify is not None:
                names |= {step.verify.series} if step.verify.series else {t.series for t in self.triggers}
        return names

    def matching_trigger(self, incident: Incident, cause: SeriesKey | None = None) -> tuple[Trigger, SeriesKey] | None:
        """The first trigger that matches ``incident`` and the series it matches."""
        for trigger in self.triggers:
            series = trigger.matched_series(incident, cause)
            if series is not None:
                return trigger, series
        return None

    def refused_namespaces(self, policy_allow: Allow | None) -> list[tuple[tuple[str | int, ...], str]]:
        """Steps whose namespace is written literally and is outside an allowlist (the policy's, the playbook's
        or the step's own): they could never run, so they are errors at load time. (location, reason) each."""
        refused: list[tuple[tuple[str | int, ...], str]] = []
        for index, step in enumerate(self.steps):
            namespace = step.params.get("namespace")
            if not isinstance(namespace, str) or is_template(namespace):
                continue
            step_allow = self.guards.overridden_by(step.guards).allow
            for allow, scope in ((policy_allow, "policy"), (step_allow, "playbook")):
                if allow is not None and allow.namespaces and namespace not in allow.namespaces:
                    refused.append(
                        (
                            ("steps", index, "params", "namespace"),
                            f"namespace {namespace!r} is not in the {scope} allowlist {allow.namespaces}",
                        )
                    )
                    break
        return refused


def playbook_json_schema() -> dict[str, Any]:
    """The JSON Schema of a playbook file, generated from the models above (shipped for editors)."""
    schema = Playbook.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "aiops-engine playbook"
    return schema
