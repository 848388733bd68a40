"""The engine image (``Dockerfile``), built with buildah and run with podman: its commands, its user, its health
check, what it ships and its size. ``test_engine_image_kafka`` runs its default command against Kafka."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.adapters.api.auth import Role
from tests.deploy import containers
from tests.deploy.containers import Container, podman
from tests.deploy.stack import REPO
from tests.engine.adapters.tokens import SPEC, bearer
from tests.support.engine_process import free_port
from tests.support.waiting import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow, containers.needs_images]

# About half of what the image took with every extra, every library's test suite and pip's bytecode of all of
# them (802 MB on the stand-in base image of scripts/services/containers.sh).
SIZE_LIMIT_BYTES = 450_000_000
UID = "10001"
SITE_PACKAGES = "/opt/venv/lib/python3.11/site-packages"


def test_the_image_runs_aiops_serve_as_uid_10001_with_a_health_check(engine_image: str) -> None:
    inspected: list[dict[str, Any]] = json.loads(podman("image", "inspect", engine_image).stdout)
    config = inspected[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    assert config["Entrypoint"] == ["aiops"]
    assert config["Cmd"] == ["serve"]
    # The docker image format keeps HEALTHCHECK (the OCI format has no field for it).
    assert inspected[0]["Healthcheck"]["Test"][:2] == ["CMD", "python"]


def test_the_image_is_under_450_mb(engine_image: str) -> None:
    size = containers.image_size(engine_image)
    print(f"{engine_image}: {size / 1e6:.0f} MB")
    assert size < SIZE_LIMIT_BYTES


def test_demo_prints_its_summary(engine_image: str) -> None:
    done = containers.run_once(engine_image, "demo", "--fast", "--json", timeout=300)
    report = json.loads(done.stdout)
    assert report["samples"] == 11 * 2880
    assert [e["kind"] for e in report["episodes"] if not e["detected"]] == []
    assert report["unexpected_incidents"] == 0


def test_the_playbooks_shipped_in_the_image_validate(engine_image: str) -> None:
    done = containers.run_once(engine_image, "playbooks", "validate", "/app/playbooks")
    shipped = [path for path in (REPO / "playbooks").glob("*.yaml") if not path.name.startswith("_")]
    assert done.stdout.startswith(f"{len(shipped)} playbooks valid"), done.stdout


def test_token_prints_an_entry_for_aiops_api_tokens(engine_image: str) -> None:
    done = containers.run_once(engine_image, "token", "alice", "--role", "responder")
    assert "alice:responder:" in done.stdout


def test_the_image_offers_every_detector_family_and_the_backtest_plot(engine_image: str) -> None:
    # The `detectors` extra is in the image (river, scikit-learn, SciPy), and the plot needs no library.
    csv = f"{SITE_PACKAGES}/engine/scenarios/serving_stack_in_trouble/fraud_error_ratio.csv"
    families = ("default", "rarity", "hst", "adwin", "page_hinkley", "isolation_forest", "ks", "psi")
    script = "".join(f"aiops backtest {csv} --detector {family} --json && " for family in families)
    done = containers.run_once(
        engine_image,
        "-c",
        script + f"aiops backtest {csv} --plot /tmp/plot.svg && head -c 5 /tmp/plot.svg",
        entrypoint="sh",
        timeout=600,
    )
    reports = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [report["detector"] for report in reports] == list(families)
    assert all(report["points"] > 0 for report in reports)
    assert done.stdout.rstrip().endswith("<svg")


def test_the_libraries_start_up_imports_ship_as_bytecode_and_import(engine_image: str) -> None:
    # deploy/image/bytecode.py: the libraries' start-up modules lost their sources to bytecode, the engine's did not;
    # both the Kubernetes and the MLflow backends still import and build their clients.
    code = (
        "import importlib.util, kubernetes.client, mlflow.tracking, engine.adapters.actions.kubernetes_api\n"
        "print(kubernetes.client.__file__, engine.adapters.actions.kubernetes_api.__file__)\n"
        "print(kubernetes.client.AppsV1Api(kubernetes.client.ApiClient()).__class__.__name__)\n"
        "print(mlflow.tracking.MlflowClient('http://127.0.0.1:1').__class__.__name__)\n"
    )
    done = containers.run_once(engine_image, "-c", code, entrypoint="python")
    files, api, client = done.stdout.splitlines()
    library, own = files.split()
    assert library == f"{SITE_PACKAGES}/kubernetes/client/__init__.pyc"
    assert own == f"{SITE_PACKAGES}/engine/adapters/actions/kubernetes_api.py"
    assert (api, client) == ("AppsV1Api", "MlflowClient")


@pytest.fixture(scope="module")
def replay(engine_image: str) -> Iterator[tuple[Container, str]]:
    """``aiops run`` (the bundled replay and the API) in the image, on a free loopback port."""
    port = free_port()
    env = {"AIOPS_HTTP_PORT": str(port), "AIOPS_API_TOKENS": SPEC}
    with containers.running(engine_image, "run", env=env) as container:
        yield container, f"http://127.0.0.1:{port}"


def test_run_serves_healthz_and_the_api(replay: tuple[Container, str]) -> None:
    container, base = replay
    eventually(
        lambda: container.running() and httpx.get(f"{base}/healthz", timeout=2).status_code == 200,
        "the engine's /healthz in the container",
        timeout_s=120,
    )
    status = httpx.get(f"{base}/api/v1/status", headers=bearer(Role.VIEWER), timeout=5)
    assert status.status_code == 200


def test_the_process_runs_as_uid_10001(replay: tuple[Container, str]) -> None:
    done = replay[0].exec("id")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"uid={UID}(aiops) gid={UID}(aiops)"), done.stdout


def test_the_health_check_passes(replay: tuple[Container, str]) -> None:
    container, base = replay
    eventually(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, "/healthz", timeout_s=120)
    done = podman("healthcheck", "run", container.name, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert container.inspect("{{.State.Health.Status}}") == "healthy"


def test_sigterm_stops_run_with_status_0_within_the_grace_period(replay: tuple[Container, str]) -> None:
    container, base = replay
    eventually(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, "/healthz", timeout_s=120)
    status, seconds = container.stop(grace_s=30)
    assert status == 0, container.logs()
    assert seconds < 30
    assert "aiops-engine stopped." in container.logs()
