"""Every action a playbook step may name: its parameter model and the sentence its dry-run records.

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


class WebhookNotifyParams(ActionParams):
    url: str = Field(pattern=r"^https?://")
    message: str = Field(min_length=1)
    format: Literal["json", "slack"] = Field(
        default="json", description="slack: a Slack-compatible {'text': ...} body; json: the incident and message"
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
        "grafana_annotate": GrafanaAnnotateParams,
    }
)


class UnknownActionError(LookupError):
    """A playbook named an action that is not in the catalogue."""


def params_model(action: str) -> type[ActionParams]:
    try:
        return CATALOGUE[action]
    except KeyError:
        known = ", ".join(sorted(CATALOGUE))
        raise UnknownActionError(f"unknown action {action!r}; allowed: {known}") from None


def parse_params(action: str, raw: Mapping[str, Any]) -> ActionParams:
    """Validate ``raw`` against the action's parameter model (raises pydantic.ValidationError)."""
    return params_model(action).model_validate(dict(raw))
