"""Shared by the tests that install the chart into the real test control plane: helm against that cluster, and
the Secrets an operator creates before installing."""

from __future__ import annotations

import base64
import subprocess

from kubernetes import client

from tests.integration import kube


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    assert kube.KUBECONFIG is not None
    return subprocess.run(
        [str(kube.HELM), "--kubeconfig", kube.KUBECONFIG, *args], capture_output=True, text=True, check=check
    )


def operator_secrets(admin: client.ApiClient, namespace: str) -> None:
    """The Secrets an operator creates before installing: the store's URL and the API tokens."""
    core = client.CoreV1Api(admin)
    for name, key, value in (
        ("aiops-engine-database", "url", "postgresql+asyncpg://aiops:not-a-password@postgres:5432/aiops"),
        ("aiops-engine-api-tokens", "tokens", "ops:admin:" + "0" * 64),
    ):
        encoded = base64.b64encode(value.encode()).decode()
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "data": {key: encoded}})
