"""The chart against a real Kubernetes control plane (scripts/services/kubernetes.sh: etcd, kube-apiserver,
controller manager, scheduler and a kwok fake node that marks scheduled pods Running): the API server accepts every
object the chart renders, and `helm install` brings the engine and the model server up in a fresh namespace, and
`helm uninstall` takes them away again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic

from tests.helm.installs import helm, operator_secrets
from tests.integration import kube

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        kube.KUBECONFIG is None,
        reason="AIOPS_TEST_KUBECONFIG is not set (make test starts the Kubernetes control plane)",
    ),
    pytest.mark.skipif(not kube.HELM.exists(), reason="helm is not built (scripts/services/kubernetes.sh build)"),
]
RELEASE = "aiops"
# kwok's fake node carries this label; without it the pods would wait for a node that runs containers.
ON_THE_FAKE_NODE = "nodeSelector.type=kwok"


@pytest.fixture(scope="module")
def admin() -> Iterator[client.ApiClient]:
    api = kube.admin_client()
    yield api
    kube.close(api)


@pytest.fixture
def namespace(admin: client.ApiClient) -> Iterator[str]:
    name = kube.unique_namespace(admin, prefix="aiops-chart")
    yield name
    client.CoreV1Api(admin).delete_namespace(name)


def _values(namespace: str) -> list[str]:
    sets = [f"actions.namespaces={{{namespace}}}", ON_THE_FAKE_NODE, "mlflow.deploy=true", "mlflow.trackingUri="]
    return [flag for value in sets for flag in ("--set", value)]


def _running(admin: client.ApiClient, namespace: str, component: str) -> int:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    pods = client.CoreV1Api(admin).list_namespaced_pod(namespace, label_selector=selector).items
    return sum(1 for pod in pods if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)


def test_the_api_server_accepts_every_object_the_chart_renders(admin: client.ApiClient, namespace: str) -> None:
    rendered = helm("template", RELEASE, str(kube.CHART), "--namespace", namespace, *_values(namespace)).stdout
    objects: list[dict[str, Any]] = [o for o in yaml.safe_load_all(rendered) if o]
    resources = dynamic.DynamicClient(admin).resources
    kinds = set()
    for body in objects:
        resource = resources.get(api_version=body["apiVersion"], kind=body["kind"])
        path = resource.path(namespace=body["metadata"].get("namespace", namespace))
        # Strict field validation: a misspelt or misplaced field is an error, not silently dropped.
        admin.call_api(
            path,
            "POST",
            query_params=[("dryRun", "All"), ("fieldValidation", "Strict")],
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            response_type="object",
        )
        kinds.add(body["kind"])
    assert {"Deployment", "Service", "ConfigMap", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    assert "PodDisruptionBudget" in kinds


def test_the_api_server_refuses_a_misplaced_field(admin: client.ApiClient, namespace: str) -> None:
    # The check above can fail: the same call refuses an object with a field Kubernetes does not know.
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "data": {}, "dta": {}}
    with pytest.raises(client.ApiException, match="unknown field"):
        admin.call_api(
            f"/api/v1/namespaces/{namespace}/configmaps",
            "POST",
            query_params=[("dryRun", "All"), ("fieldValidation", "Strict")],
            header_params={"Content-Type": "application/json", "Accept": "application/json"},
            body=body,
            auth_settings=["BearerToken"],
            response_type="object",
        )


def test_helm_install_brings_up_the_engine_and_the_model_server_and_uninstall_removes_them(
    admin: client.ApiClient, namespace: str
) -> None:
    operator_secrets(admin, namespace)
    helm(
        "install", RELEASE, str(kube.CHART), "--namespace", namespace, *_values(namespace), "--wait", "--timeout", "45s"
    )
    try:
        assert kube.wait_until(lambda: _running(admin, namespace, "engine") == 2, 30, "two engine replicas Running")
        assert _running(admin, namespace, "model-server") == 1
        assert _running(admin, namespace, "mlflow") == 1
        [budget] = client.PolicyV1Api(admin).list_namespaced_pod_disruption_budget(namespace).items
        assert budget.spec.min_available == 1
        status = yaml.safe_load(helm("status", RELEASE, "--namespace", namespace, "--output", "yaml").stdout)
        assert status["info"]["status"] == "deployed"
    finally:
        helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "30s")
    kube.wait_until(
        lambda: not client.CoreV1Api(admin).list_namespaced_pod(namespace).items, 30, "the release's pods gone"
    )
    assert not client.AppsV1Api(admin).list_namespaced_deployment(namespace).items
    assert not client.RbacAuthorizationV1Api(admin).list_namespaced_role(namespace).items
