"""Which live backend carries out each action, built from the settings: the systems the operator configured.

An action whose system is not configured has no backend: in live mode its steps fail with a clear sentence
("no live backend is configured"), in dry-run and shadow mode nothing is called anyway.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from engine.adapters.actions.alertmanager_silences import AlertmanagerSilences
from engine.adapters.actions.grafana_annotations import GrafanaAnnotations
from engine.adapters.actions.notifications import WebhookNotifier
from engine.adapters.actions.pagerduty import PagerDutyEvents
from engine.app.paging import routing_keys
from engine.app.settings import Settings
from engine.core.actions.executor import ActionBackend, RetryPolicy
from engine.core.actions.ledger import ActionLedger
from engine.core.paging import event_id
from engine.domain.clock import Clock
from engine.domain.errors import ConfigurationError
from engine.domain.events import ActionStatus

if TYPE_CHECKING:
    from engine.adapters.actions.kubernetes_api import KubernetesApi

IN_CLUSTER = "in-cluster"


@dataclass
class ActionBackends:
    """The live backends by action name, and what must be closed when the engine stops."""

    by_action: dict[str, ActionBackend] = field(default_factory=dict)
    _closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def add(self, actions: Mapping[str, ActionBackend], close: Callable[[], Awaitable[None]]) -> None:
        self.by_action.update(actions)
        self._closers.append(close)

    async def aclose(self) -> None:
        for close in reversed(self._closers):
            await close()
        self._closers.clear()


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.action_attempts, timeout_s=settings.action_timeout_s)


def open_action_backends(settings: Settings, clock: Clock, ledger: ActionLedger) -> ActionBackends:
    backends = ActionBackends()
    timeout_s = settings.action_timeout_s
    # Webhooks need no configuration: the playbook names the URL.
    notifier = WebhookNotifier(timeout_s=timeout_s, public_url=settings.public_url)
    backends.add({"webhook_notify": notifier}, notifier.aclose)
    keys = routing_keys(settings)
    if keys:

        async def trigger_delivered(dedup_key: str) -> bool:
            return await ledger.status(event_id(dedup_key, "trigger")) is ActionStatus.SUCCEEDED

        pagerduty = PagerDutyEvents(
            keys, trigger_delivered=trigger_delivered, url=settings.pagerduty_url, timeout_s=timeout_s
        )
        backends.add({"pagerduty_event": pagerduty, "pagerduty_trigger": pagerduty}, pagerduty.aclose)
    if settings.kubeconfig:
        api = _kubernetes(settings)
        backends.add(_kubernetes_backends(api, clock), lambda: asyncio.to_thread(api.close))
    if settings.mlflow_tracking_uri:
        # Imported only when configured, as Kubernetes' client is: MLflow's client alone is 100 MB of imports.
        from engine.adapters.actions.mlflow_aliases import (  # noqa: PLC0415
            FAIL_FAST_ENVIRONMENT,
            MlflowModelAliasBackend,
            MlflowPromptAliasBackend,
        )

        for name, value in FAIL_FAST_ENVIRONMENT.items():
            # MLflow's client reads its retry policy only from the environment; without this an unreachable
            # registry would hold a step for minutes instead of failing into the executor's own retries.
            os.environ.setdefault(name, value)
        uri = settings.mlflow_tracking_uri
        models, prompts = MlflowModelAliasBackend(uri, clock=clock), MlflowPromptAliasBackend(uri, clock=clock)
        backends.add({"mlflow_rollback_alias": models, "mlflow_rollback_prompt": prompts}, _nothing_to_close)
    if settings.alertmanager_url:
        silences = AlertmanagerSilences(settings.alertmanager_url, timeout_s=timeout_s, clock=clock)
        backends.add({"alertmanager_silence": silences}, silences.aclose)
    if settings.grafana_url:
        annotations = GrafanaAnnotations(settings.grafana_url, settings.grafana_token, timeout_s=timeout_s, clock=clock)
        backends.add({"grafana_annotate": annotations}, annotations.aclose)
    return backends


async def _nothing_to_close() -> None:
    return None


def _kubernetes(settings: Settings) -> KubernetesApi:
    from kubernetes.config import ConfigException  # noqa: PLC0415

    from engine.adapters.actions.kubernetes_api import KubernetesApi  # noqa: PLC0415

    kubeconfig = None if settings.kubeconfig == IN_CLUSTER else Path(settings.kubeconfig)
    if kubeconfig is not None and not kubeconfig.is_file():
        raise ConfigurationError(f"AIOPS_KUBECONFIG: no such file {kubeconfig}")
    try:
        return KubernetesApi.connect(kubeconfig, settings.kube_context or None)
    except (ConfigException, OSError, ValueError) as exc:
        raise ConfigurationError(f"AIOPS_KUBECONFIG: cannot use {settings.kubeconfig}: {exc}") from exc


def _kubernetes_backends(api: KubernetesApi, clock: Clock) -> Mapping[str, ActionBackend]:
    from engine.adapters.actions.kubernetes_jobs import CreateJobBackend  # noqa: PLC0415
    from engine.adapters.actions.kubernetes_workloads import (  # noqa: PLC0415
        RolloutRestartBackend,
        RolloutUndoBackend,
        ScaleDeploymentBackend,
    )

    return {
        "scale_deployment": ScaleDeploymentBackend(api, clock),
        "rollout_restart": RolloutRestartBackend(api, clock),
        "rollout_undo": RolloutUndoBackend(api, clock),
        "create_job": CreateJobBackend(api),
    }
