"""The whole engine acting on a real Kubernetes control plane: a real `aiops run` process replays the bundled
serving-stack scenario in live mode with the shipped latency playbook, as the restricted ServiceAccount; and a real
process killed between the API call and the step's record, then recovered."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from engine.adapters.actions.change_history import changes
from engine.adapters.actions.kubernetes_api import KubernetesApi
from engine.adapters.actions.kubernetes_workloads import ScaleDeploymentBackend
from engine.adapters.api.auth import Role
from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.executor import ActionBackend, ActionExecutor
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.domain.clock import SystemClock
from engine.domain.events import ActionMode, ActionStatus
from tests.engine.adapters.tokens import bearer
from tests.integration import kube
from tests.support.action_states import UNSETTLED
from tests.support.crash_after_action import OWNER, REQUEST_ID
from tests.support.engine_process import REPO, running_engine

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        kube.KUBECONFIG is None,
        reason="AIOPS_TEST_KUBECONFIG is not set (make test starts the Kubernetes control plane)",
    ),
]
# The bundled scenario's latency series carries these labels; the shipped playbook scales that deployment.
NAMESPACE, DEPLOYMENT = "serving", "fraud-detector"
LATENCY_PLAYBOOK = REPO / "playbooks" / "fraud-latency-scale-out.yaml"


@pytest.fixture(scope="module")
def admin() -> Iterator[client.ApiClient]:
    api = kube.admin_client()
    kube.ensure_namespace(api, NAMESPACE)
    kube.allow_engine_in(api, NAMESPACE)
    yield api
    kube.close(api)


@pytest.fixture
def fresh_deployment(admin: client.ApiClient) -> None:
    """serving/fraud-detector with 2 Running replicas and no history of the engine's changes."""
    apps = client.AppsV1Api(admin)
    try:
        apps.delete_namespaced_deployment(DEPLOYMENT, NAMESPACE, propagation_policy="Foreground")
        kube.wait_until(lambda: not _exists(admin), what="old deployment gone")
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    kube.deployment(admin, NAMESPACE, DEPLOYMENT, replicas=2)
    kube.wait_until(lambda: kube.running_pods(admin, NAMESPACE, DEPLOYMENT) == 2, what="2 pods Running")


def _exists(admin: client.ApiClient) -> bool:
    try:
        client.AppsV1Api(admin).read_namespaced_deployment(DEPLOYMENT, NAMESPACE)
    except client.ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _replicas(admin: client.ApiClient) -> int:
    return int(client.AppsV1Api(admin).read_namespaced_deployment(DEPLOYMENT, NAMESPACE).spec.replicas)


def _playbooks(directory: Path, **verify: str) -> Path:
    """Only the latency playbook (and the shipped policy and correlation), its verification's fields replaced by
    ``verify``."""
    directory.mkdir()
    text = LATENCY_PLAYBOOK.read_text()
    for field, value in verify.items():
        shipped = re.search(rf"^(\s+){field}: .*$", text, re.MULTILINE)
        assert shipped is not None, field
        text = text.replace(shipped.group(0), f"{shipped.group(1)}{field}: {value}")
    # Only the fraud model's deployment exists here: the recommender's slow dependency scales nothing.
    assert text.count("""matchers: ['model=~".+"']""") == 2
    text = text.replace("""matchers: ['model=~".+"']""", """matchers: ['model="fraud-detector"']""")
    (directory / LATENCY_PLAYBOOK.name).write_text(text)
    # With the shipped correlation, the traffic surge and the latency it causes are one incident, scaled out once.
    for rules in ("_policy.yaml", "_correlation.yaml"):
        shutil.copy(REPO / "playbooks" / rules, directory / rules)
    return directory


def _scale_actions(base: str) -> list[dict[str, Any]]:
    actions = httpx.get(f"{base}/api/v1/actions", headers=bearer(Role.VIEWER), timeout=5).json()
    return [a for a in actions if a["action"] == "scale_deployment"]


def _final(base: str) -> list[dict[str, Any]]:
    def settled() -> list[dict[str, Any]]:
        actions = _scale_actions(base)
        return actions if actions and all(a["status"] not in UNSETTLED for a in actions) else []

    return list(kube.wait_until(settled, timeout_s=60, what="scale actions settled"))


@pytest.mark.usefixtures("fresh_deployment")
def test_a_latency_anomaly_scales_the_real_deployment_and_verification_passes(
    admin: client.ApiClient, tmp_path: Path
) -> None:
    kubeconfig = kube.engine_kubeconfig(admin, tmp_path)
    settings = {
        "AIOPS_MODE": "live",
        "AIOPS_KUBECONFIG": str(kubeconfig),
        # The scenario's latency spike lasts about 40 minutes: give the scale-out an hour to bring it down.
        "AIOPS_PLAYBOOK_DIR": str(_playbooks(tmp_path / "playbooks", within="1h")),
    }
    with running_engine(tmp_path, **settings) as base:
        [action] = _final(base)
    assert action["status"] == "succeeded", action
    assert action["detail"].startswith("verified: value < 0.2 held"), action
    assert _replicas(admin) == 4
    kube.wait_until(lambda: kube.running_pods(admin, NAMESPACE, DEPLOYMENT) == 4, what="4 pods Running")


@pytest.mark.usefixtures("fresh_deployment")
def test_a_failed_verification_undoes_the_scale_out(admin: client.ApiClient, tmp_path: Path) -> None:
    kubeconfig = kube.engine_kubeconfig(admin, tmp_path)
    settings = {
        "AIOPS_MODE": "live",
        "AIOPS_KUBECONFIG": str(kubeconfig),
        # p99 latency never drops under 1 ms: the verification fails and the undo must restore 2 replicas
        "AIOPS_PLAYBOOK_DIR": str(_playbooks(tmp_path / "playbooks", condition="value < 0.001")),
    }
    with running_engine(tmp_path, **settings) as base:
        [action] = _final(base)
    assert action["status"] == "undone", action
    assert f"restored Deployment {NAMESPACE}/{DEPLOYMENT} to replicas=2" in action["detail"]
    assert _replicas(admin) == 2
    kube.wait_until(lambda: kube.running_pods(admin, NAMESPACE, DEPLOYMENT) == 2, what="back to 2 pods Running")


@pytest.mark.usefixtures("fresh_deployment")
async def test_a_kill_between_the_api_call_and_the_record_does_not_repeat_the_action(
    admin: client.ApiClient, tmp_path: Path
) -> None:
    kubeconfig = kube.engine_kubeconfig(admin, tmp_path)
    database = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.support.crash_after_action", database, str(kubeconfig), NAMESPACE, DEPLOYMENT],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert _replicas(admin) == 4  # the API call was made ...

    store = await SqlStore.open(database)
    api = KubernetesApi.connect(kubeconfig)
    clock = SystemClock()
    backends: dict[str, ActionBackend] = {"scale_deployment": ScaleDeploymentBackend(api, clock)}
    try:
        assert await store.ledger.status(REQUEST_ID) is ActionStatus.RUNNING  # ... and its outcome was never recorded
        # Another replica leaves the step alone while the crashed one's lease lasts.
        other = ActionExecutor(store.ledger, clock, backends, owner="another-replica")
        assert await other.claim_due(10) == []
        # The crashed replica, restarted under the same name, takes its own step over at once.
        executor = ActionExecutor(store.ledger, clock, backends, owner=OWNER)
        remediator = Remediator(Planner([], ActionMode.LIVE), executor, store.ledger, Policy())
        [recovered] = await remediator.recover()
        assert recovered.request.id == REQUEST_ID
        assert recovered.status is ActionStatus.SUCCEEDED
        assert "found in place after a restart" in recovered.detail
        assert await store.ledger.status(REQUEST_ID) is ActionStatus.SUCCEEDED
        assert (await executor.execute(recovered.request)).status is ActionStatus.DUPLICATE
        assert await remediator.recover() == []
    finally:
        api.close()
        await store.close()
    assert _replicas(admin) == 4  # not 6: the step was not done twice
    annotations = client.AppsV1Api(admin).read_namespaced_deployment(DEPLOYMENT, NAMESPACE).metadata.annotations
    assert [c.key for c in changes(annotations)] == [REQUEST_ID]
