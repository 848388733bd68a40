"""The MLflow alias rollbacks against a real MLflow tracking/registry server (scripts/services/mlflow.sh starts
one and prints where it is), and the reference model server following a rolled-back alias.

Every registered model version is a real pyfunc model (tests/integration/mlflow_constant_model.py) that predicts
the version number it was registered as, so a prediction says which version answered. Each test registers its
own model or prompt under a fresh name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from engine.adapters.actions.mlflow_aliases import (
    FAIL_FAST_ENVIRONMENT,
    ROLLED_BACK_BY,
    MlflowModelAliasBackend,
    MlflowPromptAliasBackend,
)
from engine.adapters.api.auth import Role
from engine.core.actions.catalogue import MlflowRollbackAliasParams, MlflowRollbackPromptParams
from engine.domain.clock import FakeClock
from engine.domain.errors import PermanentError, TemporaryError
from engine.domain.events import ActionMode, ActionRequest
from tests.engine.adapters.tokens import bearer
from tests.support.action_states import UNSETTLED
from tests.support.engine_process import running_engine
from tests.support.mlflow_models import Sources, log_constant_models, register_model

MLFLOW_URL = os.environ.get("AIOPS_TEST_MLFLOW_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        MLFLOW_URL is None, reason="AIOPS_TEST_MLFLOW_URL is not set (scripts/services/mlflow.sh starts MLflow)"
    ),
]
ROOT = Path(__file__).resolve().parents[2]
HISTORY = "aiops.alias-history.champion"


@pytest.fixture(autouse=True)
def _fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the engine's start-up applies: the executor retries, not the MLflow client.
    for name, value in FAIL_FAST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def client() -> MlflowClient:
    assert MLFLOW_URL is not None
    return MlflowClient(tracking_uri=MLFLOW_URL, registry_uri=MLFLOW_URL)


@pytest.fixture(scope="module")
def sources(client: MlflowClient, tmp_path_factory: pytest.TempPathFactory) -> Sources:
    return log_constant_models(client, tmp_path_factory.mktemp("models"))


@pytest.fixture
def model(client: MlflowClient, sources: Sources) -> str:
    return register_model(client, sources)


@pytest.fixture
def backend() -> MlflowModelAliasBackend:
    assert MLFLOW_URL is not None
    return MlflowModelAliasBackend(MLFLOW_URL, clock=FakeClock(1_800_000_000.0))


def request(key: str, action: str = "mlflow_rollback_alias", **params: Any) -> ActionRequest:
    return ActionRequest.create(
        id=key,
        incident_id="incident-7",
        playbook="model-regression",
        step=1,
        action=action,
        params=params,
        mode=ActionMode.LIVE,
        requested_at=0.0,
    )


def champion(client: MlflowClient, name: str) -> int:
    return int(client.get_model_version_by_alias(name, "champion").version)


def history(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = json.loads(client.get_registered_model(name).tags[HISTORY])
    return entries


def mark(client: MlflowClient, name: str, version: int) -> str | None:
    return client.get_model_version(name, str(version)).tags.get(ROLLED_BACK_BY)


async def test_rollback_moves_the_alias_to_the_previous_version_and_records_the_move(
    client: MlflowClient, model: str, backend: MlflowModelAliasBackend
) -> None:
    params = MlflowRollbackAliasParams(model=model)
    step = request("rollback-1", model=model)
    assert not await backend.applied(params, step)

    said = await backend.execute(params, step)

    assert said == f"moved MLflow model {model}@champion from version 3 to 2"
    assert champion(client, model) == 2
    assert history(client, model) == [
        {"key": "rollback-1", "incident": "incident-7", "from": 3, "to": 2, "at": 1_800_000_000.0}
    ]
    assert mark(client, model, 3) == "rollback-1"
    assert await backend.applied(params, step)


async def test_a_second_rollback_skips_the_versions_rolled_back_from(
    client: MlflowClient, sources: Sources, model: str, backend: MlflowModelAliasBackend
) -> None:
    params = MlflowRollbackAliasParams(model=model)
    first, second = request("first", model=model), request("second", model=model)
    await backend.execute(params, first)
    assert await backend.execute(params, second) == f"moved MLflow model {model}@champion from version 2 to 1"

    assert champion(client, model) == 1
    assert [(e["key"], e["from"], e["to"]) for e in history(client, model)] == [("first", 3, 2), ("second", 2, 1)]
    assert (mark(client, model, 3), mark(client, model, 2)) == ("first", "second")
    assert not await backend.applied(params, first)  # the alias no longer points where the first step put it
    assert await backend.applied(params, second)
    with pytest.raises(PermanentError, match="no version before 1"):
        await backend.execute(params, request("third", model=model))

    # A fix is released as version 4 and regresses too: both versions rolled back from before are skipped.
    client.create_model_version(model, sources.uris[2], run_id=sources.run_id)
    client.set_registered_model_alias(model, "champion", "4")
    assert await backend.execute(params, request("fourth", model=model)) == (
        f"moved MLflow model {model}@champion from version 4 to 1"
    )


async def test_undo_moves_the_alias_back_and_clears_the_mark(
    client: MlflowClient, model: str, backend: MlflowModelAliasBackend
) -> None:
    params = MlflowRollbackAliasParams(model=model)
    step = request("rollback-1", model=model)
    await backend.execute(params, step)

    assert await backend.undo(params, step) == f"moved MLflow model {model}@champion back from version 2 to 3"

    assert champion(client, model) == 3
    assert mark(client, model, 3) is None
    assert not await backend.applied(params, step)
    assert [(e["key"], e["from"], e["to"]) for e in history(client, model)][-1] == ("rollback-1/undo", 2, 3)
    assert "nothing to undo" in await backend.undo(params, step)
    assert champion(client, model) == 3


async def test_undo_leaves_an_alias_that_someone_moved_since_alone(
    client: MlflowClient, model: str, backend: MlflowModelAliasBackend
) -> None:
    params = MlflowRollbackAliasParams(model=model)
    step = request("rollback-1", model=model)
    await backend.execute(params, step)
    client.set_registered_model_alias(model, "champion", "1")

    with pytest.raises(PermanentError, match="now points at version 1"):
        await backend.undo(params, step)
    assert champion(client, model) == 1
    with pytest.raises(PermanentError, match=r"no move .* is recorded"):
        await backend.undo(params, request("never-ran", model=model))


async def test_executing_a_step_again_changes_nothing(
    client: MlflowClient, model: str, backend: MlflowModelAliasBackend
) -> None:
    params = MlflowRollbackAliasParams(model=model)
    step = request("rollback-1", model=model)
    await backend.execute(params, step)
    before = client.get_registered_model(model)

    said = await backend.execute(params, step)

    assert "nothing to do" in said
    assert champion(client, model) == 2
    after = client.get_registered_model(model)
    assert after.tags == before.tags
    assert after.last_updated_timestamp == before.last_updated_timestamp


async def test_a_move_recorded_before_a_crash_is_finished_by_running_the_step_again(
    client: MlflowClient, model: str, backend: MlflowModelAliasBackend
) -> None:
    # The engine wrote the record, then died before it moved the alias.
    record = [{"key": "rollback-1", "incident": "incident-7", "from": 3, "to": 1, "at": 1.0}]
    client.set_registered_model_tag(model, HISTORY, json.dumps(record))
    params = MlflowRollbackAliasParams(model=model)
    step = request("rollback-1", model=model)
    assert not await backend.applied(params, step)

    assert await backend.execute(params, step) == f"moved MLflow model {model}@champion from version 3 to 1"

    assert champion(client, model) == 1
    assert history(client, model) == record
    assert await backend.applied(params, step)


async def test_to_version_names_the_version(client: MlflowClient, model: str, backend: MlflowModelAliasBackend) -> None:
    params = MlflowRollbackAliasParams(model=model, to_version=1)
    assert await backend.execute(params, request("to-1", model=model, to_version=1)) == (
        f"moved MLflow model {model}@champion from version 3 to 1"
    )
    assert champion(client, model) == 1
    missing = MlflowRollbackAliasParams(model=model, to_version=7)
    with pytest.raises(PermanentError, match="has no version 7"):
        await backend.execute(missing, request("to-7", model=model, to_version=7))


async def test_nothing_to_roll_back_to_is_a_permanent_error(
    client: MlflowClient, sources: Sources, backend: MlflowModelAliasBackend
) -> None:
    only_one = register_model(client, sources, versions=1)
    with pytest.raises(PermanentError, match=f"cannot roll back MLflow model {only_one}@champion: no version"):
        await backend.execute(MlflowRollbackAliasParams(model=only_one), request("r", model=only_one))
    assert champion(client, only_one) == 1

    unknown = f"aiops-test-missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(PermanentError, match="HTTP 404"):
        await backend.execute(MlflowRollbackAliasParams(model=unknown), request("r", model=unknown))
    with pytest.raises(PermanentError, match="has no alias 'staging'"):
        await backend.execute(MlflowRollbackAliasParams(model=only_one, alias="staging"), request("r"))


async def test_an_unreachable_server_is_a_temporary_error_without_waiting() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    backend = MlflowModelAliasBackend(f"http://127.0.0.1:{port}")
    params = MlflowRollbackAliasParams(model="fraud")
    started = time.monotonic()
    with pytest.raises(TemporaryError, match="no answer from MLflow"):
        await backend.execute(params, request("r", model="fraud"))
    with pytest.raises(TemporaryError):
        await backend.applied(params, request("r", model="fraud"))
    assert time.monotonic() - started < 5


async def test_prompt_alias_rollback_and_undo(client: MlflowClient) -> None:
    assert MLFLOW_URL is not None
    name = f"aiops-test-prompt-{uuid.uuid4().hex[:12]}"
    client.create_prompt(name)
    client.create_prompt_version(name, "Classify {{text}} as fraud or not.")
    client.create_prompt_version(name, "Classify {{text}}. Answer yes or no, always.")
    client.set_prompt_alias(name, "production", 2)
    backend = MlflowPromptAliasBackend(MLFLOW_URL, clock=FakeClock(5.0))
    params = MlflowRollbackPromptParams(prompt=name)
    step = request("prompt-1", action="mlflow_rollback_prompt", prompt=name)

    assert await backend.execute(params, step) == f"moved MLflow prompt {name}@production from version 2 to 1"

    assert client.get_prompt_version_by_alias(name, "production").version == 1
    prompt = client.get_prompt(name)
    assert prompt is not None
    assert json.loads(prompt.tags["aiops.alias-history.production"]) == [
        {"key": "prompt-1", "incident": "incident-7", "from": 2, "to": 1, "at": 5.0}
    ]
    assert client.get_prompt_version(name, 2).tags[ROLLED_BACK_BY] == "prompt-1"
    assert await backend.applied(params, step)
    assert "nothing to do" in await backend.execute(params, step)
    with pytest.raises(PermanentError, match="no version before 1"):
        await backend.execute(params, request("prompt-2", action="mlflow_rollback_prompt", prompt=name))

    assert await backend.undo(params, step) == f"moved MLflow prompt {name}@production back from version 1 to 2"

    assert client.get_prompt_version_by_alias(name, "production").version == 2
    assert ROLLED_BACK_BY not in client.get_prompt_version(name, 2).tags
    assert not await backend.applied(params, step)


@contextlib.contextmanager
def model_server_process(model: str, tmp_path: Path) -> Iterator[str]:
    """``python -m serving.model_server`` serving ``models:/<model>@champion``, reloading every half second."""
    assert MLFLOW_URL is not None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "model-server.log"
    command = [sys.executable, "-m", "serving.model_server", "--model-uri", f"models:/{model}@champion"]
    command += ["--tracking-uri", MLFLOW_URL, "--port", str(port), "--reload-s", "0.5"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(log.read_text())  # pytest shows it when the test failed


@pytest.fixture
def model_server(model: str, tmp_path: Path) -> Iterator[str]:
    with model_server_process(model, tmp_path) as url:
        yield url


async def wait_until_healthy(http: httpx.AsyncClient) -> None:
    deadline = time.monotonic() + 45
    while True:
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the model server did not start within 45 s"
        await asyncio.sleep(0.2)


async def predict(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post("/predict", json={"inputs": [[0.5, 1.0], [2.0, 3.5]]})
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return body


async def test_the_served_model_follows_the_rolled_back_alias(
    model: str, model_server: str, backend: MlflowModelAliasBackend
) -> None:
    async with httpx.AsyncClient(base_url=model_server, timeout=5.0) as http:
        await wait_until_healthy(http)
        assert await predict(http) == {"predictions": [3, 3], "model_version": "3"}

        await backend.execute(MlflowRollbackAliasParams(model=model), request("rollback-1", model=model))
        rolled_back = time.monotonic()
        while (answer := await predict(http))["model_version"] != "2":
            assert time.monotonic() - rolled_back < 10, "the server still serves version 3 after 10 s"
            await asyncio.sleep(0.1)

        assert answer == {"predictions": [2, 2], "model_version": "2"}
        metrics = (await http.get("/metrics")).text
        assert "model_server_model_version 2.0" in metrics
        assert 'model_server_errors_total{stage="reload"} 0.0' in metrics
        assert "model_server_request_duration_seconds_count" in metrics


@pytest.fixture
def promoted_fraud_model(client: MlflowClient, sources: Sources) -> Iterator[str]:
    """``fraud-detector`` (the model of the bundled scenario) with two versions, its champion just promoted to 2."""
    name = "fraud-detector"
    with contextlib.suppress(MlflowException):
        client.delete_registered_model(name)
    client.create_registered_model(name)
    for uri in sources.uris[:2]:
        client.create_model_version(name, uri, run_id=sources.run_id)
    client.set_registered_model_alias(name, "champion", "2")
    yield name
    client.delete_registered_model(name)


async def test_the_engine_rolls_the_champion_back_after_an_error_burst_and_the_server_follows(
    promoted_fraud_model: str, client: MlflowClient, tmp_path: Path
) -> None:
    """A real `aiops run` in live mode with the shipped error-burst playbook: the replayed bad rollout of the
    fraud model (its alias moves, then errors burst) moves its champion alias back to version 1, and a model
    server following the alias serves 1."""
    assert MLFLOW_URL is not None
    playbooks = tmp_path / "playbooks"
    playbooks.mkdir()
    shipped = (ROOT / "playbooks" / "error-burst-rollback.yaml").read_text()
    # The replayed burst lasts about 25 minutes whatever the engine does: give the verification an hour.
    assert "within: 10m" in shipped
    (playbooks / "error-burst-rollback.yaml").write_text(shipped.replace("within: 10m", "within: 1h"))
    # The shipped rules and correlation: the rollback fires where the model is the probable cause (the bad rollout),
    # not for the errors that follow the recommender's slow dependency or the drift.
    for rules in ("_policy.yaml", "_correlation.yaml"):
        (playbooks / rules).write_text((ROOT / "playbooks" / rules).read_text())
    with model_server_process(promoted_fraud_model, tmp_path) as server:
        async with httpx.AsyncClient(base_url=server, timeout=5.0) as http:
            await wait_until_healthy(http)
            assert (await predict(http))["model_version"] == "2"
            settings = {
                "AIOPS_MODE": "live",
                "AIOPS_MLFLOW_TRACKING_URI": MLFLOW_URL,
                "AIOPS_PLAYBOOK_DIR": str(playbooks),
            }
            with running_engine(tmp_path, **settings) as engine:
                # The replay can finish while the remediation stage is still talking to MLflow: wait for the step.
                deadline = time.monotonic() + 60
                while True:
                    listed = await http.get(f"{engine}/api/v1/actions", headers=bearer(Role.VIEWER))
                    rollbacks = [a for a in listed.json() if a["action"] == "mlflow_rollback_alias"]
                    if rollbacks and all(a["status"] not in UNSETTLED for a in rollbacks):
                        break
                    assert time.monotonic() < deadline, f"the rollback did not settle: {rollbacks}"
                    await asyncio.sleep(0.2)
            [rollback] = rollbacks
            assert rollback["status"] == "succeeded", rollback
            assert champion(client, promoted_fraud_model) == 1
            [move] = history(client, promoted_fraud_model)
            assert (move["from"], move["to"], move["key"]) == (2, 1, rollback["id"])
            deadline = time.monotonic() + 10
            while (await predict(http))["model_version"] != "1":
                assert time.monotonic() < deadline, "the model server still serves version 2"
                await asyncio.sleep(0.1)
