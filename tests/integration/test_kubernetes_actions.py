"""The Kubernetes actions against a real control plane (etcd, kube-apiserver, controller manager, scheduler and kwok
fake nodes, started by scripts/services/kubernetes.sh), acting as the engine's restricted ServiceAccount bound to
the RBAC rules the Helm chart ships."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from engine.adapters.actions.change_history import ANNOTATION, changes
from engine.adapters.actions.kubernetes_api import KubernetesApi
from engine.adapters.actions.kubernetes_jobs import CreateJobBackend
from engine.adapters.actions.kubernetes_workloads import (
    RolloutRestartBackend,
    RolloutUndoBackend,
    ScaleDeploymentBackend,
)
from engine.core.actions.catalogue import parse_params
from engine.core.actions.executor import ActionExecutor, RetryPolicy
from engine.core.memory import InMemoryLedger
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.model import Playbook
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import SystemClock
from engine.domain.errors import PermanentError, TemporaryError
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    ActionStatus,
    IncidentChange,
    IncidentChangeKind,
    SeriesKey,
)
from tests.engine.factories import LATENCY, incident
from tests.integration import kube

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        kube.KUBECONFIG is None,
        reason="AIOPS_TEST_KUBECONFIG is not set (make test starts the Kubernetes control plane)",
    ),
]


@pytest.fixture(scope="module")
def admin() -> Iterator[client.ApiClient]:
    api = kube.admin_client()
    yield api
    kube.close(api)


@pytest.fixture(scope="module")
def engine_kubeconfig(admin: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return kube.engine_kubeconfig(admin, tmp_path_factory.mktemp("engine"))


@pytest.fixture
def engine_api(engine_kubeconfig: Path) -> Iterator[KubernetesApi]:
    api = KubernetesApi.connect(engine_kubeconfig)
    yield api
    api.close()


@pytest.fixture
def namespace(admin: client.ApiClient) -> str:
    """A fresh namespace the engine is allowed to act in."""
    name = kube.unique_namespace(admin)
    kube.allow_engine_in(admin, name)
    return name


def _request(action: str, key: str = "req-1", incident_id: str = "inc-1", **params: Any) -> ActionRequest:
    return ActionRequest.create(
        id=key,
        incident_id=incident_id,
        playbook="test",
        step=0,
        action=action,
        params=params,
        mode=ActionMode.LIVE,
        requested_at=0.0,
    )


def _replicas(admin: client.ApiClient, namespace: str, name: str) -> int:
    return int(client.AppsV1Api(admin).read_namespaced_deployment(name, namespace).spec.replicas)


async def test_scale_out_reaches_running_pods_once_per_request_and_undo_restores(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    kube.deployment(admin, namespace, "fraud-detector", replicas=2)
    kube.wait_until(lambda: kube.running_pods(admin, namespace, "fraud-detector") == 2, what="2 pods Running")
    backend = ScaleDeploymentBackend(engine_api, SystemClock())
    request = _request("scale_deployment", namespace=namespace, deployment="fraud-detector", step=2, max_replicas=12)
    params = parse_params(request.action, request.params)

    assert not await backend.applied(params, request)
    detail = await backend.execute(params, request)
    assert detail == f"scaled deployment {namespace}/fraud-detector from 2 to 4 replicas"
    again = await backend.execute(params, request)
    assert "already" in again
    assert _replicas(admin, namespace, "fraud-detector") == 4
    assert await backend.applied(params, request)
    kube.wait_until(lambda: kube.running_pods(admin, namespace, "fraud-detector") == 4, what="4 pods Running")

    assert await backend.undo(params, request) == f"restored Deployment {namespace}/fraud-detector to replicas=2"
    assert _replicas(admin, namespace, "fraud-detector") == 2
    recorded = client.AppsV1Api(admin).read_namespaced_deployment("fraud-detector", namespace).metadata.annotations
    assert [c.key for c in changes(recorded)] == ["req-1", "req-1/undo"]


async def test_scale_stays_within_bounds(admin: client.ApiClient, engine_api: KubernetesApi, namespace: str) -> None:
    kube.deployment(admin, namespace, "ranker", replicas=3)
    backend = ScaleDeploymentBackend(engine_api, SystemClock())
    request = _request("scale_deployment", namespace=namespace, deployment="ranker", step=10, max_replicas=5)
    await backend.execute(parse_params(request.action, request.params), request)
    assert _replicas(admin, namespace, "ranker") == 5


async def test_an_hpa_that_owns_the_deployment_gets_its_minimum_raised_instead(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    kube.deployment(admin, namespace, "fraud-detector", replicas=2)
    client.AutoscalingV2Api(admin).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "fraud-detector"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "fraud-detector"},
                "minReplicas": 2,
                "maxReplicas": 3,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
                    }
                ],
            },
        },
    )
    backend = ScaleDeploymentBackend(engine_api, SystemClock())
    request = _request("scale_deployment", namespace=namespace, deployment="fraud-detector", replicas=4)
    params = parse_params(request.action, request.params)
    detail = await backend.execute(params, request)
    assert detail.startswith(f"raised the minimum of HorizontalPodAutoscaler {namespace}/fraud-detector")
    hpa = client.AutoscalingV2Api(admin).read_namespaced_horizontal_pod_autoscaler("fraud-detector", namespace)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (4, 4)
    # The engine left spec.replicas to the autoscaler, which now scales the deployment up to its new minimum.
    kube.wait_until(lambda: _replicas(admin, namespace, "fraud-detector") == 4, timeout_s=60, what="HPA scaled to 4")
    assert await backend.applied(params, request)
    await backend.undo(params, request)
    hpa = client.AutoscalingV2Api(admin).read_namespaced_horizontal_pod_autoscaler("fraud-detector", namespace)
    assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (2, 3)


async def test_rollout_restart_is_recorded_once(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    kube.deployment(admin, namespace, "fraud-detector", replicas=1)
    backend = RolloutRestartBackend(engine_api, SystemClock())
    request = _request("rollout_restart", namespace=namespace, deployment="fraud-detector")
    params = parse_params(request.action, request.params)
    await backend.execute(params, request)
    await backend.execute(params, request)
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("fraud-detector", namespace)
    assert "kubectl.kubernetes.io/restartedAt" in deployment.spec.template.metadata.annotations
    assert len(changes(deployment.metadata.annotations)) == 1
    assert await backend.applied(params, request)
    with pytest.raises(PermanentError):
        await backend.undo(params, request)


async def test_rollout_undo_goes_back_one_revision_and_its_undo_forward(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    apps = client.AppsV1Api(admin)
    kube.deployment(admin, namespace, "fraud-detector", replicas=1, image="model-server:1")

    def revisions() -> int:
        sets = apps.list_namespaced_replica_set(namespace, label_selector="app=fraud-detector").items
        return len(sets)

    kube.wait_until(lambda: revisions() == 1, what="first ReplicaSet")
    apps.patch_namespaced_deployment(
        "fraud-detector",
        namespace,
        {"spec": {"template": {"spec": {"containers": [{"name": "server", "image": "model-server:2"}]}}}},
    )
    kube.wait_until(lambda: revisions() == 2, what="second ReplicaSet")
    backend = RolloutUndoBackend(engine_api, SystemClock())
    request = _request("rollout_undo", namespace=namespace, deployment="fraud-detector")
    params = parse_params(request.action, request.params)

    def image() -> str:
        return str(apps.read_namespaced_deployment("fraud-detector", namespace).spec.template.spec.containers[0].image)

    assert "from revision 2" in await backend.execute(params, request)
    assert image() == "model-server:1"
    assert await backend.applied(params, request)
    await backend.undo(params, request)
    assert image() == "model-server:2"


async def test_rollout_undo_without_a_previous_revision_is_permanent(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    kube.deployment(admin, namespace, "fresh", replicas=1)
    backend = RolloutUndoBackend(engine_api, SystemClock())
    request = _request("rollout_undo", namespace=namespace, deployment="fresh")
    kube.wait_until(
        lambda: client.AppsV1Api(admin).list_namespaced_replica_set(namespace).items, what="first ReplicaSet"
    )
    with pytest.raises(PermanentError, match="no previous revision"):
        await backend.execute(parse_params(request.action, request.params), request)


def _retrain_template(admin: client.ApiClient, namespace: str) -> None:
    client.BatchV1Api(admin).create_namespaced_cron_job(
        namespace,
        {
            "metadata": {"name": "retrain"},
            "spec": {
                "schedule": "0 0 1 1 *",
                "suspend": True,
                "jobTemplate": {
                    "spec": {
                        "backoffLimit": 0,
                        "template": {
                            "spec": {
                                "restartPolicy": "Never",
                                "nodeSelector": {"type": "kwok"},
                                "containers": [{"name": "train", "image": "trainer:1", "args": ["--epochs", "3"]}],
                            }
                        },
                    }
                },
            },
        },
    )


async def test_a_retraining_job_is_created_once_even_when_the_trigger_fires_repeatedly(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    _retrain_template(admin, namespace)
    backend = CreateJobBackend(engine_api)
    params = {"namespace": namespace, "template": "retrain", "model": "fraud-detector", "model_version": "7"}
    first = _request("create_job", key="req-a", incident_id="inc-a", **params)
    parsed = parse_params(first.action, first.params)
    assert (await backend.execute(parsed, first)).startswith(f"created job {namespace}/retrain-")
    assert "already created" in await backend.execute(parsed, first)
    second = _request("create_job", key="req-b", incident_id="inc-b", **params)
    assert "still running" in await backend.execute(parsed, second)

    jobs = client.BatchV1Api(admin).list_namespaced_job(namespace).items
    assert len(jobs) == 1
    [job] = jobs
    assert job.metadata.labels["aiops-engine.io/incident"] == "inc-a"
    env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert env == {"AIOPS_MODEL_NAME": "fraud-detector", "AIOPS_MODEL_VERSION": "7", "AIOPS_INCIDENT_ID": "inc-a"}
    assert job.spec.template.spec.containers[0].args == ["--epochs", "3"]
    assert await backend.applied(parsed, first)
    assert not await backend.applied(parsed, second)
    kube.wait_until(lambda: kube.running_pods_of_job(admin, namespace, job.metadata.name), what="the job's pod runs")

    await backend.undo(parsed, first)
    assert not await backend.applied(parsed, first)


async def test_rbac_refuses_a_namespace_the_engine_is_not_bound_in(
    admin: client.ApiClient, engine_api: KubernetesApi
) -> None:
    foreign = kube.unique_namespace(admin, "foreign")
    kube.deployment(admin, foreign, "fraud-detector", replicas=2)
    backend = ScaleDeploymentBackend(engine_api, SystemClock())
    request = _request("scale_deployment", namespace=foreign, deployment="fraud-detector", step=2)
    with pytest.raises(PermanentError, match="forbidden"):
        await backend.execute(parse_params(request.action, request.params), request)
    assert _replicas(admin, foreign, "fraud-detector") == 2


async def test_the_engine_refuses_a_namespace_outside_its_allowlist_before_calling_the_api(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    """The engine's own allowlist stops the step even where RBAC would have let it through."""
    kube.deployment(admin, namespace, "fraud-detector", replicas=2)
    calls: list[str] = []

    class Counting(ScaleDeploymentBackend):
        async def execute(self, params: Any, request: ActionRequest) -> str:
            calls.append(request.id)
            return await super().execute(params, request)

    playbook = Playbook.model_validate(
        {
            "name": "scale",
            "triggers": [{"series": LATENCY.name}],
            "steps": [
                {
                    "action": "scale_deployment",
                    "params": {
                        "namespace": "{{ incident.labels.namespace }}",
                        "deployment": "fraud-detector",
                        "step": 1,
                    },
                }
            ],
        }
    )
    ledger = InMemoryLedger()
    executor = ActionExecutor(
        ledger, SystemClock(), {"scale_deployment": Counting(engine_api, SystemClock())}, owner="test"
    )
    policy = Policy.model_validate({"allow": {"namespaces": ["serving"]}})
    remediator = Remediator(Planner([playbook], ActionMode.LIVE), executor, ledger, policy)
    series = SeriesKey.of(LATENCY.name, {"model": "fraud-detector", "namespace": namespace})
    change = IncidentChange(IncidentChangeKind.OPENED, incident(series=series, id="inc-allow", opened_at=0.0), 0.0)
    await ledger.plan(remediator.plan(change), at=change.at)
    [result] = await remediator.run_due(10)
    assert result.status is ActionStatus.SKIPPED
    assert "allow" in result.detail
    assert calls == []
    assert _replicas(admin, namespace, "fraud-detector") == 2


async def test_a_stale_write_is_a_temporary_conflict(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    kube.deployment(admin, namespace, "fraud-detector", replicas=2)
    apps = engine_api.apps
    stale = await engine_api.call("read", apps.read_namespaced_deployment, "fraud-detector", namespace)
    client.AppsV1Api(admin).patch_namespaced_deployment("fraud-detector", namespace, {"spec": {"replicas": 3}})
    stale["spec"]["replicas"] = 5
    with pytest.raises(TemporaryError, match="409"):
        await engine_api.call("update", apps.replace_namespaced_deployment, "fraud-detector", namespace, stale)
    assert _replicas(admin, namespace, "fraud-detector") == 3


async def test_a_concurrent_write_is_read_again_and_the_change_reapplied(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    """Someone else writes the deployment between the engine's read and its write: the executor re-reads and the
    engine's change lands on top of theirs instead of overwriting it."""
    kube.deployment(admin, namespace, "fraud-detector", replicas=2)
    interfered: list[bool] = []

    class Racing(ScaleDeploymentBackend):
        async def _replace(self, obj: Any) -> None:
            if not interfered:
                interfered.append(True)
                client.AppsV1Api(admin).patch_namespaced_deployment(
                    "fraud-detector", namespace, {"metadata": {"labels": {"touched": "yes"}}}
                )
            await super()._replace(obj)

    executor = ActionExecutor(
        InMemoryLedger(),
        SystemClock(),
        {"scale_deployment": Racing(engine_api, SystemClock())},
        RetryPolicy(attempts=3, first_backoff_s=0.05, max_backoff_s=0.1, timeout_s=10),
        owner="test",
    )
    result = await executor.execute(
        _request("scale_deployment", namespace=namespace, deployment="fraud-detector", step=1)
    )
    assert result.status is ActionStatus.SUCCEEDED, result.detail
    deployment = client.AppsV1Api(admin).read_namespaced_deployment("fraud-detector", namespace)
    assert (deployment.spec.replicas, deployment.metadata.labels.get("touched")) == (3, "yes")
    assert ANNOTATION in deployment.metadata.annotations


async def test_an_unreachable_api_server_is_a_temporary_error(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "nowhere.kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: x\n"
        "clusters: [{name: x, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: x, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: x, user: x}}]\n"
    )
    api = KubernetesApi.connect(kubeconfig)
    backend = ScaleDeploymentBackend(api, SystemClock())
    request = _request("scale_deployment", namespace="serving", deployment="x", step=1)
    with pytest.raises(TemporaryError, match="cannot reach"):
        await backend.execute(parse_params(request.action, request.params), request)
    api.close()


def _keda_crd(admin: client.ApiClient) -> None:
    """Only the ScaledObject API of KEDA (no KEDA operator runs here): enough to see the engine change its bounds."""
    crd = {
        "metadata": {"name": "scaledobjects.keda.sh"},
        "spec": {
            "group": "keda.sh",
            "scope": "Namespaced",
            "names": {"plural": "scaledobjects", "singular": "scaledobject", "kind": "ScaledObject"},
            "versions": [
                {
                    "name": "v1alpha1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
                }
            ],
        },
    }
    extensions = client.ApiextensionsV1Api(admin)
    try:
        extensions.create_custom_resource_definition(crd)
    except client.ApiException as exc:
        if exc.status != 409:
            raise

    def established() -> bool:
        conditions = extensions.read_custom_resource_definition("scaledobjects.keda.sh").status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    kube.wait_until(established, what="ScaledObject CRD established")


async def test_a_keda_scaled_object_that_owns_the_deployment_gets_its_minimum_raised(
    admin: client.ApiClient, engine_api: KubernetesApi, namespace: str
) -> None:
    _keda_crd(admin)
    kube.deployment(admin, namespace, "fraud-detector", replicas=1)
    custom = client.CustomObjectsApi(admin)
    custom.create_namespaced_custom_object(
        "keda.sh",
        "v1alpha1",
        namespace,
        "scaledobjects",
        {
            "apiVersion": "keda.sh/v1alpha1",
            "kind": "ScaledObject",
            "metadata": {"name": "fraud-detector-scaler"},
            "spec": {"scaleTargetRef": {"name": "fraud-detector"}, "minReplicaCount": 1, "maxReplicaCount": 6},
        },
    )
    backend = ScaleDeploymentBackend(engine_api, SystemClock())
    request = _request("scale_deployment", namespace=namespace, deployment="fraud-detector", step=2)
    params = parse_params(request.action, request.params)
    detail = await backend.execute(params, request)
    assert detail.startswith(f"raised the minimum of ScaledObject {namespace}/fraud-detector-scaler")

    def bounds() -> tuple[int, int]:
        spec = custom.get_namespaced_custom_object(
            "keda.sh", "v1alpha1", namespace, "scaledobjects", "fraud-detector-scaler"
        )["spec"]
        return spec["minReplicaCount"], spec["maxReplicaCount"]

    assert bounds() == (3, 6)
    assert _replicas(admin, namespace, "fraud-detector") == 1  # spec.replicas is KEDA's to set, not the engine's
    await backend.undo(params, request)
    assert bounds() == (1, 6)
