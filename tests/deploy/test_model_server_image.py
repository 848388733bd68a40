"""The model server image (``serving/Dockerfile``), built with buildah and run with podman against the real MLflow
server of the tests: it serves ``models:/<name>@champion``, answers predictions and ``/metrics``, and follows the
alias when it moves."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from mlflow.tracking import MlflowClient

from tests.deploy import containers
from tests.support.engine_process import free_port
from tests.support.mlflow_models import Sources, log_constant_models, register_model
from tests.support.waiting import eventually

MLFLOW_URL = os.environ.get("AIOPS_TEST_MLFLOW_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    containers.needs_images,
    pytest.mark.skipif(
        MLFLOW_URL is None, reason="AIOPS_TEST_MLFLOW_URL is not set (scripts/services/mlflow.sh starts MLflow)"
    ),
]


@pytest.fixture(scope="module")
def client() -> MlflowClient:
    assert MLFLOW_URL is not None
    return MlflowClient(tracking_uri=MLFLOW_URL, registry_uri=MLFLOW_URL)


@pytest.fixture(scope="module")
def sources(client: MlflowClient, tmp_path_factory: pytest.TempPathFactory) -> Sources:
    return log_constant_models(client, tmp_path_factory.mktemp("models"))


@pytest.fixture
def served(
    model_server_image: str, client: MlflowClient, sources: Sources, tmp_path: Path
) -> Iterator[tuple[str, str]]:
    """The image serving a new registered model (champion on version 3): the model's name and the server's URL."""
    assert MLFLOW_URL is not None
    model = register_model(client, sources)
    port = free_port()
    # The image fixes --port 8080; a later --port wins, so that the server takes a free port of the shared network.
    args = ["--model-uri", f"models:/{model}@champion", "--tracking-uri", MLFLOW_URL, "--port", str(port)]
    with containers.running(model_server_image, *args, "--reload-s", "0.5") as container:
        base = f"http://127.0.0.1:{port}"
        eventually(
            lambda: container.running() and httpx.get(f"{base}/healthz", timeout=2).status_code == 200,
            "the model server in the container to load the champion",
            timeout_s=180,
        )
        yield model, base


def _predict(base: str) -> dict[str, Any]:
    response = httpx.post(f"{base}/predict", json={"inputs": [[0.5, 1.0], [2.0, 3.5]]}, timeout=10)
    response.raise_for_status()
    answer: dict[str, Any] = response.json()
    return answer


def test_the_image_serves_the_champion_and_follows_the_alias(served: tuple[str, str], client: MlflowClient) -> None:
    model, base = served
    assert _predict(base) == {"predictions": [3, 3], "model_version": "3"}

    client.set_registered_model_alias(model, "champion", "1")
    moved = time.monotonic()
    while (answer := _predict(base))["model_version"] != "1":
        assert time.monotonic() - moved < 30, "the server still serves version 3 30 s after the alias moved"
        time.sleep(0.2)
    assert answer == {"predictions": [1, 1], "model_version": "1"}

    metrics = httpx.get(f"{base}/metrics", timeout=5).text
    assert "model_server_model_version 1.0" in metrics
    assert 'model_server_errors_total{stage="reload"} 0.0' in metrics
    assert "model_server_request_duration_seconds_count" in metrics


def test_the_process_runs_as_uid_10001(model_server_image: str) -> None:
    done = containers.run_once(model_server_image, entrypoint="id")
    assert done.stdout.startswith("uid=10001(serving) gid=10001(serving)"), done.stdout
