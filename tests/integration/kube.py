"""Helpers for tests against the real Kubernetes control plane that scripts/services/kubernetes.sh starts: an admin
client for setting the scene, and the engine's own restricted identity (a ServiceAccount bound to the RBAC rules the
Helm chart ships, in the namespaces a test allows)."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "aiops-engine"
HELM = REPO / ".bin" / "helm"
KUBECONFIG = os.environ.get("AIOPS_TEST_KUBECONFIG")
ENGINE_NAMESPACE = "aiops-system"
ENGINE_ACCOUNT = "aiops-engine"


def admin_client() -> client.ApiClient:
    return config.new_client_from_config(config_file=KUBECONFIG, persist_config=False)


def close(api: client.ApiClient) -> None:
    api.close()
    api.rest_client.pool_manager.clear()


def unique_namespace(api: client.ApiClient, prefix: str = "aiops-t") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    ensure_namespace(api, name)
    return name


def ensure_namespace(api: client.ApiClient, name: str) -> None:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": name}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def allow_engine_in(api: client.ApiClient, namespace: str) -> None:
    """Grant the engine's ServiceAccount its action rules in ``namespace`` exactly as the Helm chart does: the chart's
    Role and RoleBinding, rendered by ``helm template`` with ``actions.namespaces=[namespace]``."""
    rendered = subprocess.run(
        [
            str(HELM),
            "template",
            "aiops",
            str(CHART),
            "--namespace",
            ENGINE_NAMESPACE,
            "--show-only",
            "templates/action-rbac.yaml",
            "--set",
            f"actions.namespaces={{{namespace}}}",
            "--set",
            f"serviceAccount.name={ENGINE_ACCOUNT}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rbac = client.RbacAuthorizationV1Api(api)
    for document in yaml.safe_load_all(rendered):
        if document is None:
            continue
        if document["kind"] == "Role":
            _create(lambda body=document: rbac.create_namespaced_role(namespace, body))
        elif document["kind"] == "RoleBinding":
            _create(lambda body=document: rbac.create_namespaced_role_binding(namespace, body))


def engine_kubeconfig(api: client.ApiClient, directory: Path) -> Path:
    """A kubeconfig holding a fresh token of the engine's ServiceAccount (no other rights than its bindings)."""
    core = client.CoreV1Api(api)
    ensure_namespace(api, ENGINE_NAMESPACE)
    _create(lambda: core.create_namespaced_service_account(ENGINE_NAMESPACE, {"metadata": {"name": ENGINE_ACCOUNT}}))
    token = core.create_namespaced_service_account_token(
        ENGINE_ACCOUNT, ENGINE_NAMESPACE, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    server, authority = api.configuration.host, api.configuration.ssl_ca_cert
    path = directory / "engine.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": {"server": server, "certificate-authority": authority}}],
                "users": [{"name": "engine", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "engine"}}],
                "current-context": "test",
            }
        )
    )
    return path


def deployment(api: client.ApiClient, namespace: str, name: str, replicas: int, image: str = "model-server:1") -> None:
    labels = {"app": name}
    client.AppsV1Api(api).create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [{"name": "server", "image": image}],
                        # kwok's fake node carries this taint-free label; pods land there and are marked Running
                        "nodeSelector": {"type": "kwok"},
                    },
                },
            },
        },
    )


def running_pods(api: client.ApiClient, namespace: str, app: str) -> int:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"app={app}").items
    return sum(1 for pod in pods if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)


def wait_until(condition: Callable[[], Any], timeout_s: float = 60.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"{what} did not hold within {timeout_s:g}s (last: {last!r})")


def _create(call: Callable[[], Any]) -> None:
    try:
        call()
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def running_pods_of_job(api: client.ApiClient, namespace: str, job: str) -> int:
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    return sum(1 for pod in pods if pod.status.phase in ("Running", "Succeeded"))
