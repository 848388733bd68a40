"""The chart's engine identity and playbooks acting on the model server the chart installed, on a real Kubernetes
control plane (scripts/services/kubernetes.sh, with a kwok fake node that marks scheduled pods Running).

Containers do not really run on kwok's node, so the engine pod the chart installs cannot act itself. The closest
honest stand-in: `helm install` the chart into a fresh namespace, then run a real `aiops run` process (the bundled
scenario replayed in live mode) as the chart's ServiceAccount, with a token minted for it by the TokenRequest API, and
with the playbooks read back from the chart's playbook ConfigMap in the cluster. Only the latency playbook's target
is pointed at the chart's own model server (the scenario's series name serving/fraud-detector), so what is tested is
the chart's RBAC, ServiceAccount, playbooks and Deployment together, as the engine uses them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client, config

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import bearer
from tests.helm.installs import helm, operator_secrets
from tests.integration import kube
from tests.support.action_states import UNSETTLED
from tests.support.engine_process import running_engine

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
LATENCY_PLAYBOOK = "fraud-latency-scale-out.yaml"
POLICY = "_policy.yaml"
CORRELATION = "_correlation.yaml"
# What the shipped latency playbook's step does to the deployment it scales.
STEP = 2


@dataclass(frozen=True)
class Release:
    namespace: str
    service_account: str
    model_server: str
    playbooks: dict[str, str]


@pytest.fixture(scope="module")
def admin() -> Iterator[client.ApiClient]:
    api = kube.admin_client()
    yield api
    kube.close(api)


def _component(admin: client.ApiClient, namespace: str, component: str) -> str:
    """The name of the chart's Deployment for ``component``, found by its labels rather than guessed."""
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    [deployment] = client.AppsV1Api(admin).list_namespaced_deployment(namespace, label_selector=selector).items
    return str(deployment.metadata.name)


@pytest.fixture
def release(admin: client.ApiClient) -> Iterator[Release]:
    """The chart installed into a fresh namespace whose workloads its engine may act on (and nowhere else)."""
    namespace = kube.unique_namespace(admin, prefix="aiops-scale")
    try:
        operator_secrets(admin, namespace)
        helm(
            "install",
            RELEASE,
            str(kube.CHART),
            "--namespace",
            namespace,
            "--set",
            f"actions.namespaces={{{namespace}}}",
            # kwok's fake node carries this label; without it the pods would wait for a node that runs containers.
            "--set",
            "nodeSelector.type=kwok",
            "--wait",
            "--timeout",
            "45s",
        )
        try:
            engine = client.AppsV1Api(admin).read_namespaced_deployment(
                _component(admin, namespace, "engine"), namespace
            )
            [playbooks] = [
                volume.config_map.name
                for volume in engine.spec.template.spec.volumes or []
                if volume.config_map is not None and volume.config_map.name.endswith("-playbooks")
            ]
            yield Release(
                namespace=namespace,
                service_account=str(engine.spec.template.spec.service_account_name),
                model_server=_component(admin, namespace, "model-server"),
                playbooks=dict(client.CoreV1Api(admin).read_namespaced_config_map(playbooks, namespace).data),
            )
        finally:
            helm("uninstall", RELEASE, "--namespace", namespace, "--wait", "--timeout", "30s")
    finally:
        client.CoreV1Api(admin).delete_namespace(namespace)


@pytest.fixture
def elsewhere(admin: client.ApiClient) -> Iterator[tuple[str, str]]:
    """A model server in a namespace the chart was not told to act in."""
    namespace = kube.unique_namespace(admin, prefix="aiops-other")
    kube.deployment(admin, namespace, "model-server", replicas=1)
    yield namespace, "model-server"
    client.CoreV1Api(admin).delete_namespace(namespace)


def _service_account_kubeconfig(admin: client.ApiClient, release: Release, directory: Path) -> Path:
    """A kubeconfig holding a fresh TokenRequest token of the ServiceAccount the chart created for the engine."""
    token = (
        client.CoreV1Api(admin)
        .create_namespaced_service_account_token(
            release.service_account, release.namespace, {"spec": {"expirationSeconds": 3600}}
        )
        .status.token
    )
    path = directory / "engine.kubeconfig"
    cluster = {"server": admin.configuration.host, "certificate-authority": admin.configuration.ssl_ca_cert}
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "test", "cluster": cluster}],
                "users": [{"name": "engine", "user": {"token": token}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "engine"}}],
                "current-context": "test",
            }
        )
    )
    return path


def _chart_playbooks(release: Release, directory: Path) -> Path:
    """The chart's latency playbook and policy, as the cluster holds them, aimed at the chart's own model server.

    The scenario's latency series is labelled serving/fraud-detector and the playbook targets whatever the incident's
    labels name; here the target is the release's namespace and Deployment instead, and the policy allows that
    namespace. The replayed spike lasts about 40 minutes, so the scale-out gets an hour to bring it down."""
    playbook: dict[str, Any] = yaml.safe_load(release.playbooks[LATENCY_PLAYBOOK])
    [step] = playbook["steps"]
    assert step["action"] == "scale_deployment"
    assert step["params"]["step"] == STEP
    assert step["params"]["namespace"] == "{{ incident.labels.namespace }}"
    assert step["params"]["deployment"] == "{{ incident.labels.model }}"
    step["params"] |= {"namespace": release.namespace, "deployment": release.model_server}
    assert step["verify"]["within"] == "10m"
    step["verify"]["within"] = "1h"
    policy: dict[str, Any] = yaml.safe_load(release.playbooks[POLICY])
    policy["allow"]["namespaces"] = [*policy["allow"]["namespaces"], release.namespace]
    directory.mkdir()
    # Only the fraud model's signals: the recommender's slow dependency is another problem, with no deployment here.
    for trigger in playbook["triggers"]:
        trigger["matchers"] = ['model="fraud-detector"']
    (directory / LATENCY_PLAYBOOK).write_text(yaml.safe_dump(playbook, sort_keys=False))
    (directory / POLICY).write_text(yaml.safe_dump(policy, sort_keys=False))
    # The chart's correlation rules: the traffic surge and the latency it causes are one incident, scaled out once.
    (directory / CORRELATION).write_text(release.playbooks[CORRELATION])
    return directory


def _replicas(admin: client.ApiClient, namespace: str, name: str) -> int:
    return int(client.AppsV1Api(admin).read_namespaced_deployment(name, namespace).spec.replicas)


def _running(admin: client.ApiClient, namespace: str) -> int:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=model-server"
    pods = client.CoreV1Api(admin).list_namespaced_pod(namespace, label_selector=selector).items
    return sum(1 for pod in pods if pod.status.phase == "Running" and pod.metadata.deletion_timestamp is None)


def _settled_scale_actions(base: str) -> list[dict[str, Any]]:
    def settled() -> list[dict[str, Any]]:
        actions = httpx.get(f"{base}/api/v1/actions", headers=bearer(Role.VIEWER), timeout=5).json()
        scales = [a for a in actions if a["action"] == "scale_deployment"]
        return scales if scales and all(a["status"] not in UNSETTLED for a in scales) else []

    return list(kube.wait_until(settled, timeout_s=60, what="scale actions settled"))


def test_the_engine_as_the_charts_service_account_scales_the_charts_model_server_and_nothing_elsewhere(
    admin: client.ApiClient, release: Release, elsewhere: tuple[str, str], tmp_path: Path
) -> None:
    installed = _replicas(admin, release.namespace, release.model_server)
    assert installed == 1  # the chart's modelServer.replicas
    kube.wait_until(lambda: _running(admin, release.namespace) == installed, what="the model server Running")
    kubeconfig = _service_account_kubeconfig(admin, release, tmp_path)
    settings = {
        "AIOPS_MODE": "live",
        "AIOPS_KUBECONFIG": str(kubeconfig),
        "AIOPS_PLAYBOOK_DIR": str(_chart_playbooks(release, tmp_path / "playbooks")),
    }
    with running_engine(tmp_path, **settings) as base:
        [action] = _settled_scale_actions(base)
    assert action["status"] == "succeeded", action
    assert _replicas(admin, release.namespace, release.model_server) == installed + STEP
    kube.wait_until(
        lambda: _running(admin, release.namespace) == installed + STEP, what=f"{installed + STEP} model server pods"
    )

    # The same identity is refused outside the namespaces the chart granted it: the update the scale step makes
    # (read-modify-replace of the Deployment), with a body the admin read, so only the authorisation can refuse it.
    other_namespace, other = elsewhere
    theirs = client.AppsV1Api(admin).read_namespaced_deployment(other, other_namespace)
    theirs.spec.replicas = 5
    engine = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    try:
        with pytest.raises(client.ApiException) as refused:
            client.AppsV1Api(engine).replace_namespaced_deployment(other, other_namespace, theirs)
        assert refused.value.status == 403
        # ... while the very same call on the chart's model server is allowed, so the 403 is about the namespace.
        ours = client.AppsV1Api(engine).read_namespaced_deployment(release.model_server, release.namespace)
        client.AppsV1Api(engine).replace_namespaced_deployment(release.model_server, release.namespace, ours)
    finally:
        kube.close(engine)
    assert _replicas(admin, other_namespace, other) == 1
