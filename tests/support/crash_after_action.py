"""A process that carries out one live scale-out on a real cluster and is killed (SIGKILL) the moment the API call
has returned, before the executor can record the outcome: the worst moment for exactly-once.

    python -m tests.support.crash_after_action DATABASE_URL KUBECONFIG NAMESPACE DEPLOYMENT
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from engine.adapters.actions.kubernetes_api import KubernetesApi
from engine.adapters.actions.kubernetes_workloads import ScaleDeploymentBackend
from engine.adapters.store.sql_store import SqlStore
from engine.core.actions.catalogue import ActionParams
from engine.core.actions.executor import ActionExecutor
from engine.domain.clock import SystemClock
from engine.domain.events import ActionMode, ActionRequest

OWNER = "crash-test"
REQUEST_ID = "crash-test:latency-scale-out:0"


class KilledAfterTheCall(ScaleDeploymentBackend):
    async def execute(self, params: ActionParams, request: ActionRequest) -> str:
        detail = await super().execute(params, request)
        os.kill(os.getpid(), signal.SIGKILL)
        return detail


async def main(database: str, kubeconfig: str, namespace: str, deployment: str) -> None:
    store = await SqlStore.open(database)
    clock = SystemClock()
    backend = KilledAfterTheCall(KubernetesApi.connect(Path(kubeconfig)), clock)
    # The test restarts "the same replica" under this name, which takes its own unfinished steps over at once.
    executor = ActionExecutor(store.ledger, clock, {"scale_deployment": backend}, owner=OWNER)
    request = ActionRequest.create(
        id=REQUEST_ID,
        incident_id="crash-test",
        playbook="latency-scale-out",
        step=0,
        action="scale_deployment",
        params={"namespace": namespace, "deployment": deployment, "step": 2},
        mode=ActionMode.LIVE,
        requested_at=clock.now(),
    )
    await executor.execute(request)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
