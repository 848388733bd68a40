"""Live backends for the actions on Deployments: scale_deployment, rollout_restart and rollout_undo.

Every change is a read-modify-replace of the whole object with its resourceVersion, so a concurrent writer makes
the API server answer 409 and the executor re-reads and retries instead of overwriting someone else's change. The
change and its record (change_history) are written in that one update.

When a HorizontalPodAutoscaler or a KEDA ScaledObject owns the replica count, the engine raises the autoscaler's
minimum instead of writing ``spec.replicas``, which the autoscaler would undo at its next sync.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random

from engine.adapters.actions import change_history
from engine.adapters.actions.change_history import Change
from engine.adapters.actions.failures import expect_params
from engine.adapters.actions.kubernetes_api import KubernetesApi, is_conflict, is_not_found
from engine.core.actions.catalogue import ActionParams, RolloutRestartParams, RolloutUndoParams, ScaleDeploymentParams
from engine.domain.clock import Clock
from engine.domain.errors import EngineError, PermanentError
from engine.domain.events import ActionRequest

Body = dict[str, Any]
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
REVISION = "deployment.kubernetes.io/revision"
TEMPLATE_HASH = "pod-template-hash"
CONFLICT_ATTEMPTS = 5


@dataclass(frozen=True)
class _Kind:
    """How one kind of object that can decide a Deployment's replica count is read, written and scaled."""

    name: str
    min_field: str
    max_field: str
    default_min: int
    default_max: int


DEPLOYMENT = _Kind("Deployment", "replicas", "replicas", 1, 1)
HPA = _Kind("HorizontalPodAutoscaler", "minReplicas", "maxReplicas", 1, 1)
SCALED_OBJECT = _Kind("ScaledObject", "minReplicaCount", "maxReplicaCount", 0, 100)


@dataclass
class _Object:
    kind: _Kind
    namespace: str
    name: str
    body: Body

    @property
    def annotations(self) -> dict[str, str]:
        metadata = self.body.setdefault("metadata", {})
        annotations: dict[str, str] = metadata.get("annotations") or {}
        return annotations

    def record(self, change: Change) -> None:
        self.body["metadata"]["annotations"] = change_history.with_change(self.annotations, change)

    def describe(self) -> str:
        return f"{self.kind.name} {self.namespace}/{self.name}"


class _WorkloadBackend:
    def __init__(self, api: KubernetesApi, clock: Clock) -> None:
        self._api = api
        self._clock = clock

    async def _deployment(self, namespace: str, name: str) -> _Object:
        what = f"read deployment {namespace}/{name}"
        body = await self._api.call(what, self._api.apps.read_namespaced_deployment, name, namespace)
        return _Object(DEPLOYMENT, namespace, name, body)

    async def _replace(self, obj: _Object) -> None:
        what = f"update {obj.describe()}"
        if obj.kind is DEPLOYMENT:
            await self._api.call(what, self._api.apps.replace_namespaced_deployment, obj.name, obj.namespace, obj.body)
        elif obj.kind is HPA:
            api = self._api.autoscaling
            await self._api.call(
                what, api.replace_namespaced_horizontal_pod_autoscaler, obj.name, obj.namespace, obj.body
            )
        else:
            await self._api.call(
                what,
                self._api.custom.replace_namespaced_custom_object,
                "keda.sh",
                "v1alpha1",
                obj.namespace,
                "scaledobjects",
                obj.name,
                obj.body,
            )

    def _change(self, request: ActionRequest, before: Mapping[str, Any], after: Mapping[str, Any]) -> Change:
        return Change(request.id, request.action, dict(before), dict(after), self._clock.now())

    def _undo_key(self, request: ActionRequest) -> str:
        return f"{request.id}/undo"

    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        return await _retry_on_conflict(lambda: self._execute(params, request))

    async def undo(self, params: ActionParams, request: ActionRequest) -> str:
        return await _retry_on_conflict(lambda: self._undo(params, request))

    async def _execute(self, params: ActionParams, request: ActionRequest) -> str:
        raise NotImplementedError

    async def _undo(self, params: ActionParams, request: ActionRequest) -> str:
        raise NotImplementedError


async def _retry_on_conflict(change: Callable[[], Awaitable[str]]) -> str:
    """Read-modify-replace again when someone else wrote the object in between (409), as client-go's
    RetryOnConflict does: controllers touch a Deployment often (status, revision), so a first conflict is common."""
    retrying = AsyncRetrying(
        retry=retry_if_exception(is_conflict),
        stop=stop_after_attempt(CONFLICT_ATTEMPTS),
        wait=wait_random(0.05, 0.3),
        reraise=True,
    )

    async def attempt() -> str:
        return await change()

    return await retrying(attempt)


class ScaleDeploymentBackend(_WorkloadBackend):
    async def _execute(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, ScaleDeploymentParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        owner = await self._owner(deployment)
        holder = owner or deployment
        if change_history.find(holder.annotations, request.id) is not None:
            return f"{holder.describe()} was already changed for this incident; nothing to do"
        current = int(deployment.body.get("spec", {}).get("replicas", 1))
        wanted = params.replicas if params.replicas is not None else current + (params.step or 0)
        target = max(params.min_replicas, min(params.max_replicas, wanted))
        spec = holder.body.setdefault("spec", {})
        kind = holder.kind
        before = {
            kind.min_field: spec.get(kind.min_field, kind.default_min),
            kind.max_field: spec.get(kind.max_field, kind.default_max),
        }
        spec[kind.min_field] = target
        if kind is not DEPLOYMENT:
            spec[kind.max_field] = max(int(before[kind.max_field]), target)
        holder.record(self._change(request, before, {k: spec[k] for k in before}))
        await self._replace(holder)
        if owner is None:
            return f"scaled deployment {params.namespace}/{params.deployment} from {current} to {target} replicas"
        return (
            f"raised the minimum of {owner.describe()}, which owns deployment {params.namespace}/"
            f"{params.deployment}, from {before[kind.min_field]} to {target} (it had {current} replicas)"
        )

    async def _undo(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, ScaleDeploymentParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        for holder in (deployment, await self._owner(deployment)):
            if holder is None:
                continue
            change = change_history.find(holder.annotations, request.id)
            if change is None:
                continue
            if change_history.find(holder.annotations, self._undo_key(request)) is not None:
                return f"{holder.describe()} was already restored"
            spec = holder.body.setdefault("spec", {})
            now = {field: spec.get(field) for field in change.before}
            spec.update(change.before)
            holder.record(
                Change(self._undo_key(request), f"undo {request.action}", now, change.before, self._clock.now())
            )
            await self._replace(holder)
            restored = ", ".join(f"{field}={value}" for field, value in sorted(change.before.items()))
            return f"restored {holder.describe()} to {restored}"
        raise PermanentError(
            f"no change of deployment {params.namespace}/{params.deployment} is recorded for {request.id}"
        )

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        params = expect_params(params, ScaleDeploymentParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        owner = await self._owner(deployment)
        return any(
            holder is not None and change_history.find(holder.annotations, request.id) is not None
            for holder in (deployment, owner)
        )

    async def _owner(self, deployment: _Object) -> _Object | None:
        """The autoscaler that owns the deployment's replica count, if any (HPA first, then KEDA)."""
        namespace = deployment.namespace
        hpas = await self._api.call(
            f"list HPAs in {namespace}", self._api.autoscaling.list_namespaced_horizontal_pod_autoscaler, namespace
        )
        for hpa in hpas.get("items", []):
            ref = hpa["spec"]["scaleTargetRef"]
            if ref.get("kind") == "Deployment" and ref.get("name") == deployment.name:
                return _Object(HPA, namespace, hpa["metadata"]["name"], hpa)
        try:
            scaled = await self._api.call(
                f"list KEDA ScaledObjects in {namespace}",
                self._api.custom.list_namespaced_custom_object,
                "keda.sh",
                "v1alpha1",
                namespace,
                "scaledobjects",
            )
        except EngineError as exc:
            if is_not_found(exc):  # KEDA is not installed in this cluster
                return None
            raise
        for item in scaled.get("items", []):
            ref = item.get("spec", {}).get("scaleTargetRef", {})
            if ref.get("kind", "Deployment") == "Deployment" and ref.get("name") == deployment.name:
                return _Object(SCALED_OBJECT, namespace, item["metadata"]["name"], item)
        return None


class RolloutRestartBackend(_WorkloadBackend):
    async def _execute(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, RolloutRestartParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        if change_history.find(deployment.annotations, request.id) is not None:
            return f"{deployment.describe()} was already restarted for this incident; nothing to do"
        template_meta = deployment.body["spec"]["template"].setdefault("metadata", {})
        pod_annotations = template_meta.setdefault("annotations", {})
        stamp = datetime.fromtimestamp(self._clock.now(), UTC).isoformat()
        before = {RESTARTED_AT: pod_annotations.get(RESTARTED_AT)}
        pod_annotations[RESTARTED_AT] = stamp
        deployment.record(self._change(request, before, {RESTARTED_AT: stamp}))
        await self._replace(deployment)
        return f"restarted the pods of deployment {params.namespace}/{params.deployment} (rolling, at {stamp})"

    async def _undo(self, params: ActionParams, request: ActionRequest) -> str:
        raise PermanentError("a restart cannot be undone")

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        params = expect_params(params, RolloutRestartParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        return change_history.find(deployment.annotations, request.id) is not None


class RolloutUndoBackend(_WorkloadBackend):
    """Rolls a Deployment back to the pod template of its previous ReplicaSet revision (what
    ``kubectl rollout undo`` does), and forward again on undo."""

    async def _execute(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, RolloutUndoParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        if change_history.find(deployment.annotations, request.id) is not None:
            return f"{deployment.describe()} was already rolled back for this incident; nothing to do"
        revisions = await self._revisions(deployment)
        if len(revisions) < 2:
            raise PermanentError(f"deployment {params.namespace}/{params.deployment} has no previous revision")
        (current_revision, current), (previous_revision, previous) = revisions[-1], revisions[-2]
        self._use_template(deployment, previous)
        deployment.record(
            self._change(
                request,
                {TEMPLATE_HASH: _template_hash(current), "revision": current_revision},
                {TEMPLATE_HASH: _template_hash(previous), "revision": previous_revision},
            )
        )
        await self._replace(deployment)
        return (
            f"rolled deployment {params.namespace}/{params.deployment} back from revision {current_revision} "
            f"to the pod template of revision {previous_revision}"
        )

    async def _undo(self, params: ActionParams, request: ActionRequest) -> str:
        params = expect_params(params, RolloutUndoParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        change = change_history.find(deployment.annotations, request.id)
        if change is None:
            raise PermanentError(f"no rollback of {deployment.describe()} is recorded for {request.id}")
        if change_history.find(deployment.annotations, self._undo_key(request)) is not None:
            return f"{deployment.describe()} was already rolled forward"
        wanted = change.before[TEMPLATE_HASH]
        for _, replica_set in await self._revisions(deployment):
            if _template_hash(replica_set) == wanted:
                self._use_template(deployment, replica_set)
                deployment.record(
                    Change(self._undo_key(request), "undo rollout_undo", change.after, change.before, self._clock.now())
                )
                await self._replace(deployment)
                return f"rolled deployment {params.namespace}/{params.deployment} forward to template {wanted}"
        raise PermanentError(f"the ReplicaSet with template {wanted} of {deployment.describe()} no longer exists")

    async def applied(self, params: ActionParams, request: ActionRequest) -> bool:
        params = expect_params(params, RolloutUndoParams)
        deployment = await self._deployment(params.namespace, params.deployment)
        return change_history.find(deployment.annotations, request.id) is not None

    async def _revisions(self, deployment: _Object) -> list[tuple[int, Body]]:
        """The deployment's ReplicaSets by revision, oldest first."""
        match = deployment.body["spec"]["selector"].get("matchLabels", {})
        selector = ",".join(f"{key}={value}" for key, value in sorted(match.items()))
        listed = await self._api.call(
            f"list replicasets of {deployment.describe()}",
            self._api.apps.list_namespaced_replica_set,
            deployment.namespace,
            label_selector=selector,
        )
        uid = deployment.body["metadata"]["uid"]
        owned = []
        for replica_set in listed.get("items", []):
            metadata = replica_set["metadata"]
            revision = (metadata.get("annotations") or {}).get(REVISION)
            if revision is not None and any(owner.get("uid") == uid for owner in metadata.get("ownerReferences", [])):
                owned.append((int(revision), replica_set))
        return sorted(owned, key=lambda pair: pair[0])

    def _use_template(self, deployment: _Object, replica_set: Body) -> None:
        template = replica_set["spec"]["template"]
        labels = template.get("metadata", {}).get("labels", {})
        labels.pop(TEMPLATE_HASH, None)  # the controller adds its own; a template that carries one never matches
        deployment.body["spec"]["template"] = template


def _template_hash(replica_set: Body) -> str:
    return str(replica_set["metadata"].get("labels", {}).get(TEMPLATE_HASH, ""))
