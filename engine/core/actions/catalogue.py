"""Every action a playbook step may name: its parameter model and the sentence its dry-run records; and the
actions the engine plans by itself (PagerDuty lifecycle events), which no playbook may name.

Parameter models reject unknown fields, so a typo in a playbook is caught when the playbook loads, not when
the action runs at 3 a.m.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.domain.promql_strings import quote


class ActionParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def describe(self) -> str:
        """One sentence saying exactly what the action does with these parameters."""
        raise NotImplementedError

    def target(self) -> str:
        """The resource the action changes, e.g. ``deployment:serving/fraud``: what cooldowns and budgets count."""
        raise NotImplementedError

    def undo_description(self) -> str | None:
        """What undoing the action does, or None when it cannot be undone."""
        return None

    def target_namespace(self) -> str | None:
        """The Kubernetes namespace of the target, if it has one (for allowlists and blast-radius limits)."""
        namespace = getattr(self, "namespace", None)
        return namespace if isinstance(namespace, str) else None


class ScaleDeploymentParams(ActionParams):
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)
    # Scaling to zero takes a service down: that is never a remediation the engine makes on its own.
    replicas: int | None = Field(default=None, ge=1, description="absolute target, within the bounds")
    step: int | None = Field(default=None, description="relative change, e.g. 2 or -1")
    min_replicas: int = Field(default=1, ge=1)
    max_replicas: int = Field(default=20, ge=1)

    @model_validator(mode="after")
    def _one_target(self) -> ScaleDeploymentParams:
        if (self.replicas is None) == (self.step is None):
            raise ValueError("give exactly one of 'replicas' or 'step'")
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        if self.replicas is not None and not self.min_replicas <= self.replicas <= self.max_replicas:
            raise ValueError(f"replicas {self.replicas} is outside the bounds {self.min_replicas}..{self.max_replicas}")
        return self

    def describe(self) -> str:
        target = f"to {self.replicas}" if self.replicas is not None else f"by {self.step:+d}"
        return (
            f"scale deployment {self.namespace}/{self.deployment} {target} replicas "
            f"(bounds {self.min_replicas}..{self.max_replicas})"
        )

    def target(self) -> str:
        return f"deployment:{self.namespace}/{self.deployment}"

    def undo_description(self) -> str | None:
        return f"scale deployment {self.namespace}/{self.deployment} back to its previous replica count"


class RolloutRestartParams(ActionParams):
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)

    def describe(self) -> str:
        return f"restart the pods of deployment {self.namespace}/{self.deployment} (rolling)"

    def target(self) -> str:
        return f"deployment:{self.namespace}/{self.deployment}"


class RolloutUndoParams(ActionParams):
    namespace: str = Field(min_length=1)
    deployment: str = Field(min_length=1)

    def describe(self) -> str:
        return f"roll deployment {self.namespace}/{self.deployment} back to its previous revision"

    def target(self) -> str:
        return f"deployment:{self.namespace}/{self.deployment}"

    def undo_description(self) -> str | None:
        return f"roll deployment {self.namespace}/{self.deployment} forward to the revision it had before"


class CreateJobParams(ActionParams):
    namespace: str = Field(min_length=1)
    template: str = Field(
        min_length=1, description="name of the suspended CronJob whose job template the new Job is made from"
    )
    model: str = Field(min_length=1)
    model_version: str | None = None

    def describe(self) -> str:
        version = f" version {self.model_version}" if self.model_version else ""
        return f"create job from template {self.template!r} in {self.namespace} for model {self.model}{version}"

    def target(self) -> str:
        return f"job:{self.namespace}/{self.template}/{self.model}"

    def undo_description(self) -> str | None:
        return f"delete the job created from template {self.template!r} for model {self.model}"


class MlflowRollbackAliasParams(ActionParams):
    model: str = Field(min_length=1)
    alias: str = Field(default="champion", min_length=1)
    to_version: int | None = Field(default=None, ge=1, description="roll back to this version instead")

    def describe(self) -> str:
        to = f"version {self.to_version}" if self.to_version is not None else "the previous good version"
        return f"move MLflow alias {self.model}@{self.alias} back to {to}"

    def target(self) -> str:
        return f"model:{self.model}"

    def undo_description(self) -> str | None:
        return f"move MLflow alias {self.model}@{self.alias} forward again to the version it had before"


class MlflowRollbackPromptParams(ActionParams):
    prompt: str = Field(min_length=1)
    alias: str = Field(default="production", min_length=1)
    to_version: int | None = Field(default=None, ge=1, description="roll back to this version instead")

    def describe(self) -> str:
        to = f"version {self.to_version}" if self.to_version is not None else "the previous good version"
        return f"move MLflow prompt alias {self.prompt}@{self.alias} back to {to}"

    def target(self) -> str:
        return f"prompt:{self.prompt}"

    def undo_description(self) -> str | None:
        return f"move MLflow prompt alias {self.prompt}@{self.alias} forward again to the version it had before"


class AlertmanagerSilenceParams(ActionParams):
    matchers: dict[str, str] = Field(min_length=1, description="label name -> exact value the silence matches")
    duration: str = Field(default="1h", pattern=r"^\d+[smhd]$", description="how long the silence lasts, e.g. 30m")
    comment: str = Field(default="silenced by aiops-engine", min_length=1)

    def describe(self) -> str:
        labels = ", ".join(f"{name}={quote(value)}" for name, value in sorted(self.matchers.items()))
        return f"silence alerts matching {{{labels}}} in Alertmanager for {self.duration}"

    def target(self) -> str:
        labels = ",".join(f"{name}={value}" for name, value in sorted(self.matchers.items()))
        return f"silence:{labels}"

    def undo_description(self) -> str | None:
        return "expire the silence"

    def duration_s(self) -> float:
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        return float(self.duration[:-1]) * units[self.duration[-1]]


WebhookFormat = Literal["json", "slack", "teams"]


class WebhookNotifyParams(ActionParams):
    url: str = Field(pattern=r"^https?://")
    message: str = Field(min_length=1)
    format: WebhookFormat = Field(
        default="json",
        description="slack: a Slack-compatible {'text': ...} body; teams: a Microsoft Teams Workflows message with "
        "an Adaptive Card; json: the incident and message",
    )

    def describe(self) -> str:
        return f"POST a notification to {self._site()}: {self.message}"

    def target(self) -> str:
        # Chat webhooks keep their secret in the path: records and logs show only a digest of it.
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:12]
        return f"webhook:{self._site()}#{digest}"

    def _site(self) -> str:
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"


class GrafanaAnnotateParams(ActionParams):
    text: str = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    dashboard_uid: str | None = Field(default=None, description="annotate one dashboard; all dashboards if unset")

    def describe(self) -> str:
        where = f"dashboard {self.dashboard_uid}" if self.dashboard_uid else "all dashboards"
        return f"add a Grafana annotation on {where}: {self.text}"

    def target(self) -> str:
        return f"grafana:{self.dashboard_uid or '*'}"

    def undo_description(self) -> str | None:
        return "delete the annotation"


# PagerDuty's Events API v2 limits and vocabulary.
PAGERDUTY_SUMMARY_MAX = 1024
PAGERDUTY_DEDUP_KEY_MAX = 255
PagerDutySeverity = Literal["critical", "error", "warning", "info"]
# A routing key is 32 characters: a name that long is more likely a pasted key than a name, so names stay shorter.
ROUTING_KEY_NAME = r"^[a-z][a-z0-9_-]{0,30}$"
DEFAULT_ROUTING_KEY = "default"


class PagerDutyTriggerParams(ActionParams):
    summary: str = Field(
        min_length=1, max_length=PAGERDUTY_SUMMARY_MAX, description="what the alert says (PagerDuty's summary)"
    )
    severity: PagerDutySeverity = Field(default="error", description="critical, error, warning or info")
    source: str = Field(default="aiops-engine", min_length=1, description="the affected system (PagerDuty's source)")
    routing_key: str = Field(
        default=DEFAULT_ROUTING_KEY,
        pattern=ROUTING_KEY_NAME,
        description="the name of a routing key in AIOPS_PAGERDUTY_ROUTING_KEYS ('default': "
        "AIOPS_PAGERDUTY_ROUTING_KEY); never the key itself",
    )
    dedup_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=PAGERDUTY_DEDUP_KEY_MAX,
        description="alerts with the same open dedup_key are one alert in PagerDuty (default: the incident id, "
        "the playbook and the step)",
    )

    def describe(self) -> str:
        return f"trigger a PagerDuty alert ({self.severity}, routing key {self.routing_key}): {self.summary}"

    def target(self) -> str:
        return f"pagerduty:{self.routing_key}"


class PagerDutyPayload(BaseModel):
    """The ``payload`` of a PagerDuty trigger event."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    summary: str = Field(min_length=1, max_length=PAGERDUTY_SUMMARY_MAX)
    source: str = Field(min_length=1)
    severity: PagerDutySeverity
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    timestamp: str | None = Field(default=None, description="when the problem began, ISO 8601")
    custom_details: dict[str, Any] = Field(default_factory=dict)


class PagerDutyLink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    href: str = Field(pattern=r"^https?://")
    text: str


class PagerDutyEventParams(ActionParams):
    """One event of an incident's PagerDuty lifecycle, planned by the engine (``engine.core.paging``)."""

    event_action: Literal["trigger", "acknowledge", "resolve"]
    dedup_key: str = Field(min_length=1, max_length=PAGERDUTY_DEDUP_KEY_MAX)
    payload: PagerDutyPayload | None = None
    links: list[PagerDutyLink] = Field(default_factory=list)

    @model_validator(mode="after")
    def _trigger_has_payload(self) -> PagerDutyEventParams:
        if (self.event_action == "trigger") != (self.payload is not None):
            raise ValueError("a trigger event carries a payload, and only a trigger event does")
        return self

    def describe(self) -> str:
        if self.payload is None:
            return f"send a PagerDuty {self.event_action} event for {self.dedup_key}"
        return f"send a PagerDuty trigger event for {self.dedup_key} ({self.payload.severity}): {self.payload.summary}"

    def target(self) -> str:
        return f"pagerduty:{self.dedup_key}"


CATALOGUE: Mapping[str, type[ActionParams]] = MappingProxyType(
    {
        "scale_deployment": ScaleDeploymentParams,
        "rollout_restart": RolloutRestartParams,
        "rollout_undo": RolloutUndoParams,
        "create_job": CreateJobParams,
        "mlflow_rollback_alias": MlflowRollbackAliasParams,
        "mlflow_rollback_prompt": MlflowRollbackPromptParams,
        "alertmanager_silence": AlertmanagerSilenceParams,
        "webhook_notify": WebhookNotifyParams,
        "pagerduty_trigger": PagerDutyTriggerParams,
        "grafana_annotate": GrafanaAnnotateParams,
    }
)
# Actions the engine plans by itself, outside any playbook.
ENGINE_ACTIONS: Mapping[str, type[ActionParams]] = MappingProxyType({"pagerduty_event": PagerDutyEventParams})


class UnknownActionError(LookupError):
    """A playbook named an action that is not in the catalogue."""


def params_model(action: str) -> type[ActionParams]:
    try:
        return CATALOGUE[action]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownActionError(f"unknown action {action!r}; allowed: {known}") from None


def parse_params(action: str, raw: Mapping[str, Any]) -> ActionParams:
    """Validate ``raw`` against the action's parameter model (raises pydantic.ValidationError); the engine's own
    actions are known here too, since the ledger carries them out like any step."""
    model = ENGINE_ACTIONS.get(action) or params_model(action)
    return model.model_validate(dict(raw))
