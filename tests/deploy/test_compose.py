"""compose.yaml, checked without a Docker engine: it validates against the Compose Specification's JSON Schema (the
copy the ``check-jsonschema`` package vendors), and the wiring between its services holds: every AIOPS_* variable is
a valid engine setting, addresses name services and the ports they listen on, health checks gate depends_on, state
lives in named volumes, secrets come from .env (listed in .env.example, never committed), and Prometheus, Alertmanager
and Grafana are mounted the configs they expect."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest

from engine.app.settings import load_settings
from tests.deploy import dockerfile_lint
from tests.deploy.stack import (
    AIOPS_NAME,
    COMPOSE_FILE,
    ENV_EXAMPLE,
    INTERPOLATION,
    REPO,
    compose,
    env_example,
    host_port,
    interpolate,
    load_yaml,
    mounts,
    service_environment,
)

# Where each stateful service keeps what must survive `docker compose down` (without -v).
STATE = {
    "postgres": ["/var/lib/postgresql/data"],
    "kafka": ["/var/lib/kafka/data"],
    "mlflow": ["/mlflow/db", "/mlflow/artifacts"],
    "prometheus": ["/prometheus"],
    "alertmanager": ["/alertmanager"],
    "grafana": ["/var/lib/grafana"],
}
EXPECTED_SERVICES = {"engine", "kafka", "prometheus", "alertmanager", "grafana", "mlflow", "postgres", "model-server"}
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|SHA256", re.IGNORECASE)


def _schema() -> dict[str, Any]:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    schema: dict[str, Any] = json.loads(vendor.joinpath("compose-spec.json").read_text())
    return schema


def _schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft202012Validator(_schema())
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return services


def _exposed_port(service: str) -> int:
    """The port the service's image listens on, from the Dockerfile compose builds it with."""
    build = _services()[service]["build"]
    dockerfile = REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")
    port = dockerfile_lint.listen_port(dockerfile_lint.parse_stages(dockerfile.read_text())[-1])
    assert port is not None
    return port


def _listen_ports() -> dict[str, set[int]]:
    """Ports each service listens on inside the network, as far as this file and the Dockerfiles say."""
    services = _services()
    kafka = service_environment(services["kafka"])["KAFKA_LISTENERS"]
    mlflow_port = next(arg for arg in services["mlflow"]["command"] if arg.startswith("--port="))
    return {
        "engine": {_exposed_port("engine")},
        "model-server": {_exposed_port("model-server")},
        "kafka": {int(port) for port in re.findall(r":(\d+)", kafka)},
        "mlflow": {int(mlflow_port.partition("=")[2])},
        "postgres": {5432},
        "prometheus": {9090},
        "alertmanager": {9093},
        "grafana": {3000},
    }


def _sample_environment() -> dict[str, str]:
    """What a filled-in .env could hold: .env.example's values, with a placeholder for each one left empty."""
    return {name: value or "example-value" for name, value in env_example().items()}


def test_compose_file_validates_against_the_compose_specification() -> None:
    assert _schema_errors(compose()) == []


def test_the_schema_check_finds_mistakes() -> None:
    broken = copy.deepcopy(compose())
    broken["services"]["engine"]["healthcheck"]["intervall"] = "10s"
    broken["services"]["kafka"]["depends_on"] = {"postgres": {"condition": "healthy"}}
    errors = _schema_errors(broken)
    assert any("intervall" in error for error in errors), errors
    assert any("healthy" in error for error in errors), errors


def test_the_stack_has_every_service() -> None:
    assert set(_services()) == EXPECTED_SERVICES


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_service_has_a_pinned_image_or_a_build(name: str) -> None:
    service = _services()[name]
    if "build" in service:
        build = service["build"]
        assert (REPO / build.get("context", ".") / build.get("dockerfile", "Dockerfile")).is_file()
    else:
        image = service["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag not in {"", "latest"}, f"{name}: pin {image} to a version"


@pytest.mark.parametrize("name", sorted(EXPECTED_SERVICES))
def test_service_has_a_healthcheck(name: str) -> None:
    check = _services()[name].get("healthcheck", {})
    assert not check.get("disable", False)
    assert check["test"][0] in {"CMD", "CMD-SHELL"}
    assert check.get("interval")
    assert check.get("retries")


def test_depends_on_waits_for_healthy_services_that_exist() -> None:
    services = _services()
    edges = 0
    for name, service in services.items():
        for target, condition in service.get("depends_on", {}).items():
            assert target in services, f"{name} depends on unknown service {target}"
            assert condition["condition"] == "service_healthy", f"{name} -> {target}"
            assert "healthcheck" in services[target], f"{target} has no healthcheck to wait for"
            edges += 1
    assert {"kafka", "postgres"} <= set(services["engine"]["depends_on"])
    assert edges >= 5


def test_state_lives_in_declared_named_volumes() -> None:
    document = compose()
    declared = set(document["volumes"])
    used = set()
    for name, service in document["services"].items():
        for mount in mounts(service):
            if not mount.bind:
                assert mount.source in declared, f"{name}: volume {mount.source} is not declared"
                used.add(mount.source)
    assert used == declared, "declared volumes that no service mounts"
    for name, paths in STATE.items():
        named = {mount.target for mount in mounts(document["services"][name]) if not mount.bind}
        assert set(paths) <= named, f"{name} keeps {set(paths) - named} in the container's writable layer"


def test_bind_mounts_name_files_in_the_repository() -> None:
    for name, service in _services().items():
        for mount in mounts(service):
            if mount.bind:
                assert mount.source.startswith("./"), f"{name}: {mount.source} is not relative to the project"
                assert (REPO / mount.source).exists(), f"{name}: {mount.source} does not exist"


def test_every_aiops_variable_is_a_setting_and_the_engine_environment_loads() -> None:
    text = COMPOSE_FILE.read_text() + ENV_EXAMPLE.read_text()
    environment = {
        name: interpolate(value, _sample_environment())
        for name, value in service_environment(_services()["engine"]).items()
    }
    assert set(AIOPS_NAME.findall(text)) <= set(environment) | set(env_example())
    settings = load_settings(environment)  # unknown names and invalid values raise ConfigurationError
    assert settings.database_url.startswith("postgresql+asyncpg://")
    load_settings({name: value for name, value in env_example().items() if name.startswith("AIOPS_")})


def test_unknown_aiops_variables_would_be_refused() -> None:
    environment = service_environment(_services()["engine"]) | {"AIOPS_KAFKA_BOOTSTRAPS": "kafka:9092"}
    with pytest.raises(Exception, match="AIOPS_KAFKA_BOOTSTRAPS"):
        load_settings({name: interpolate(value, _sample_environment()) for name, value in environment.items()})


def test_engine_addresses_name_services_and_their_ports() -> None:
    listen = _listen_ports()
    environment = service_environment(_services()["engine"])
    addresses = {
        name: host_port(interpolate(value, _sample_environment()).rpartition("@")[2])
        for name, value in environment.items()
        if name in {"AIOPS_KAFKA_BOOTSTRAP", "AIOPS_DATABASE_URL"} or name.endswith(("_URL", "_URI"))
    }
    assert set(addresses) >= {
        "AIOPS_KAFKA_BOOTSTRAP",
        "AIOPS_DATABASE_URL",
        "AIOPS_MLFLOW_TRACKING_URI",
        "AIOPS_ALERTMANAGER_URL",
        "AIOPS_GRAFANA_URL",
    }
    for name, address in addresses.items():
        assert address is not None, name
        host, port = address
        assert port in listen[host], f"{name}: {host} does not listen on {port}"


def test_every_interpolated_variable_is_documented_in_env_example() -> None:
    referenced = {match["name"] for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text())}
    referenced |= {secret["environment"] for secret in compose()["secrets"].values() if "environment" in secret}
    assert referenced <= set(env_example())


def test_no_secret_is_committed() -> None:
    for name, value in env_example().items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example gives {name} a value; leave secrets empty"
    for service_name, service in _services().items():
        for name, value in service_environment(service).items():
            if SECRET_NAME.search(name) and not name.endswith("_FILE"):
                assert INTERPOLATION.fullmatch(value), f"{service_name}: {name} must come from .env"
            assert "PASSWORD" not in name or name.endswith(("_FILE", "__FILE")), service_name


def test_secrets_granted_to_services_are_declared_and_read_from_files() -> None:
    document = compose()
    for name, service in document["services"].items():
        granted = {secret if isinstance(secret, str) else secret["source"] for secret in service.get("secrets", [])}
        assert granted <= set(document["secrets"]), name
        for variable, value in service_environment(service).items():
            if variable.endswith(("_FILE", "__FILE")):
                path = PurePosixPath(value)
                assert path.parent == PurePosixPath("/run/secrets"), (name, variable)
                assert path.name in granted, (name, variable)


def test_prometheus_scrapes_the_engine_and_the_model_server_where_they_listen() -> None:
    config = load_yaml(REPO / "deploy" / "compose" / "prometheus" / "prometheus.yml")
    listen = _listen_ports() | {"localhost": {9090}}
    targets = {
        job["job_name"]: [host_port(target) for static in job["static_configs"] for target in static["targets"]]
        for job in config["scrape_configs"]
    }
    scraped = {address[0] for addresses in targets.values() for address in addresses if address}
    assert {"engine", "model-server"} <= scraped
    for job, addresses in targets.items():
        for address in addresses:
            assert address is not None, job
            assert address[1] in listen[address[0]], job
    for alertmanagers in config["alerting"]["alertmanagers"]:
        for static in alertmanagers["static_configs"]:
            for target in static["targets"]:
                address = host_port(target)
                assert address is not None
                assert address[1] in listen[address[0]]


def test_alertmanager_posts_to_the_engine_webhook_with_the_ingest_token() -> None:
    config = load_yaml(REPO / "deploy" / "compose" / "alertmanager" / "alertmanager.yml")
    service = _services()["alertmanager"]
    receiver = next(item for item in config["receivers"] if item["name"] == config["route"]["receiver"])
    (webhook,) = receiver["webhook_configs"]
    assert webhook["url"] == f"http://engine:{_exposed_port('engine')}/api/v1/alerts"
    authorization = webhook["http_config"]["authorization"]
    assert authorization["type"] == "Bearer"
    token_file = PurePosixPath(authorization["credentials_file"])
    assert token_file.parent == PurePosixPath("/run/secrets")
    assert token_file.name in service["secrets"]
    assert "AIOPS_INGEST_BEARER_SHA256" in service_environment(_services()["engine"])
    assert any(mount.target == "/etc/alertmanager/alertmanager.yml" for mount in mounts(service))


def _container_files(service: dict[str, Any]) -> dict[PurePosixPath, Path]:
    """Every repository file the service's bind mounts show, by its path in the container."""
    files = {}
    for mount in mounts(service):
        if not mount.bind:
            continue
        source = REPO / mount.source
        found = sorted(path for path in source.rglob("*") if path.is_file()) if source.is_dir() else [source]
        for path in found:
            inside = path.relative_to(source) if source.is_dir() else Path()
            files[PurePosixPath(mount.target) / inside.as_posix()] = path
    return files


def _provisioned(files: dict[PurePosixPath, Path], kind: str, key: str) -> list[dict[str, Any]]:
    # Grafana reads the provisioning files directly in provisioning/<kind>, not in folders below it.
    folder = PurePosixPath("/etc/grafana/provisioning") / kind
    return [
        item
        for target, path in files.items()
        if target.parent == folder and target.suffix in {".yaml", ".yml"}
        for item in load_yaml(path)[key]
    ]


def test_grafana_provisions_the_project_dashboards_and_this_stack_prometheus() -> None:
    files = _container_files(_services()["grafana"])
    providers = _provisioned(files, "dashboards", "providers")
    assert providers, "no dashboard provider file lands in /etc/grafana/provisioning/dashboards"
    for provider in providers:
        folder = PurePosixPath(provider["options"]["path"])
        shown = {target.name for target in files if folder in target.parents}
        assert {path.name for path in (REPO / "dashboards").glob("*.json")} <= shown
    prometheus = [
        source for source in _provisioned(files, "datasources", "datasources") if source["type"] == "prometheus"
    ]
    assert [host_port(source["url"]) for source in prometheus] == [("prometheus", 9090)]


def test_model_server_follows_a_registry_model_in_the_stack_mlflow() -> None:
    command = _services()["model-server"]["command"]
    uri = interpolate(command[command.index("--model-uri") + 1], {})
    assert re.fullmatch(r"models:/[^/@]+@[^/@]+", uri)
    tracking = command[command.index("--tracking-uri") + 1]
    assert host_port(tracking) == ("mlflow", *_listen_ports()["mlflow"])


def test_mlflow_accepts_requests_addressed_to_its_service_name() -> None:
    command = _services()["mlflow"]["command"]
    allowed = next(arg for arg in command if arg.startswith("--allowed-hosts=")).partition("=")[2].split(",")
    assert "mlflow:5000" in allowed
    assert "mlflow" in allowed


def test_interpolation_helper_resolves_like_compose() -> None:
    assert interpolate("a${X:-d}b", {}) == "adb"
    assert interpolate("${X:-d}", {"X": "v"}) == "v"
    with pytest.raises(KeyError, match="X is required"):
        interpolate("${X:?set X}", {})
