"""The Helm chart is tested like code: it lints strictly, its values schema refuses bad values, and what it renders is
asserted on: the least-privilege RBAC the engine's actions need (from the same rules file the integration tests
bind), the engine and model-server workloads, the playbooks and Prometheus rules the project ships, and the
Prometheus Operator objects that exist only where the cluster serves their API."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.adapters.playbook_files import load_playbook_set
from engine.app.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "aiops-engine"
HELM = REPO / ".bin" / "helm"
MONITORING_API = "monitoring.coreos.com/v1"
pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is not built (scripts/services/kubernetes.sh build, run by make test)"
)


def _helm(*args: str) -> str:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=True).stdout


def _render(*sets: str, api_versions: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    flags = [flag for value in sets for flag in ("--set", value)]
    flags += [flag for version in api_versions for flag in ("--api-versions", version)]
    documents = yaml.safe_load_all(_helm("template", "aiops", str(CHART), "--namespace", "aiops-system", *flags))
    return [document for document in documents if document]


def _refusal(*sets: str) -> str:
    flags = [flag for value in sets for flag in ("--set", value)]
    result = subprocess.run(
        [str(HELM), "template", "aiops", str(CHART), *flags], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0, f"helm template accepted {sets}"
    return result.stderr


def _one(objects: list[dict[str, Any]], kind: str, component: str | None = None) -> dict[str, Any]:
    [found] = [
        o
        for o in objects
        if o["kind"] == kind
        and (component is None or o["metadata"]["labels"].get("app.kubernetes.io/component") == component)
    ]
    return found


def _kinds(objects: list[dict[str, Any]]) -> set[str]:
    return {o["kind"] for o in objects}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {variable["name"]: variable for variable in container["env"]}


def _same_files(copy: Path, original: Path, pattern: str) -> None:
    copies = {path.name: path.read_text() for path in copy.glob(pattern)}
    originals = {path.name: path.read_text() for path in original.glob(pattern)}
    assert originals, f"nothing matches {original / pattern}"
    assert copies == originals, f"{copy} differs from {original}: run helm/aiops-engine/hack/sync-files.sh"


def test_the_chart_lints_strictly() -> None:
    assert "0 chart(s) failed" in _helm("lint", "--strict", str(CHART))


def test_the_engine_gets_the_action_rules_in_each_allowed_namespace_and_nowhere_else() -> None:
    rules = yaml.safe_load((CHART / "files" / "action-rbac-rules.yaml").read_text())
    objects = _render("actions.namespaces={serving,batch}")
    roles = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "Role"}
    bindings = {o["metadata"]["namespace"]: o for o in objects if o["kind"] == "RoleBinding"}
    assert set(roles) == set(bindings) == {"serving", "batch"}
    assert all(role["rules"] == rules for role in roles.values())
    [account] = [o for o in objects if o["kind"] == "ServiceAccount"]
    for binding in bindings.values():
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": "aiops-system"}
        ]
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_no_rule_grants_wildcards_or_secrets() -> None:
    rules = yaml.safe_load((CHART / "files" / "action-rbac-rules.yaml").read_text())
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "secrets" not in rule["resources"]
        assert "delete" not in rule["verbs"] or rule["resources"] == ["jobs"]


def test_the_charts_copies_of_the_playbooks_and_rules_are_the_projects() -> None:
    _same_files(CHART / "files" / "playbooks", REPO / "playbooks", "*.yaml")
    _same_files(CHART / "files" / "prometheus-rules", REPO / "helm" / "prometheus-rules", "*.yml")


def test_the_playbook_config_map_holds_every_shipped_playbook_and_the_engine_loads_it(tmp_path: Path) -> None:
    objects = _render()
    config_map = _one(objects, "ConfigMap", "engine")
    shipped = {path.name: path.read_text() for path in (REPO / "playbooks").glob("*.yaml")}
    assert config_map["data"] == shipped
    for name, text in config_map["data"].items():
        (tmp_path / name).write_text(text)
    loaded = load_playbook_set(tmp_path)
    assert len(loaded.playbooks) == len([name for name in shipped if not name.startswith("_")])

    engine = _one(objects, "Deployment", "engine")
    pod = engine["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v.get("configMap")]
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    [mount] = [m for m in _container(engine)["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["mountPath"] == _env(_container(engine))["AIOPS_PLAYBOOK_DIR"]["value"]
    assert mount["readOnly"] is True


def test_the_engine_runs_aiops_serve_in_one_consumer_group_with_secrets_from_existing_secrets() -> None:
    objects = _render(
        "engine.kafka.bootstrap=kafka-0:9092,engine.kafka.groupId=fraud-aiops",
        "engine.database.existingSecret=pg,engine.database.key=dsn",
        "engine.apiTokens.existingSecret=tokens",
        "engine.env.AIOPS_ACTION_ATTEMPTS=5",
    )
    engine = _one(objects, "Deployment", "engine")
    container = _container(engine)
    env = _env(container)
    assert engine["spec"]["replicas"] == 2
    assert container["command"] == ["aiops", "serve"]
    assert env["AIOPS_KAFKA_BOOTSTRAP"]["value"] == "kafka-0:9092"
    assert env["AIOPS_KAFKA_GROUP_ID"]["value"] == "fraud-aiops"
    assert env["AIOPS_ACTION_ATTEMPTS"]["value"] == "5"
    assert env["AIOPS_DATABASE_URL"] == {
        "name": "AIOPS_DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "pg", "key": "dsn"}},
    }
    assert env["AIOPS_API_TOKENS"]["valueFrom"]["secretKeyRef"] == {"name": "tokens", "key": "tokens"}
    assert env["AIOPS_KUBECONFIG"]["value"] == "in-cluster"
    assert (
        engine["spec"]["template"]["spec"]["serviceAccountName"] == _one(objects, "ServiceAccount")["metadata"]["name"]
    )


def test_the_engine_accepts_every_setting_the_chart_gives_it() -> None:
    # The engine refuses unknown AIOPS_* variables at start-up; Kubernetes' service links would add some.
    engine = _one(_render(), "Deployment", "engine")
    assert engine["spec"]["template"]["spec"]["enableServiceLinks"] is False
    environ = {
        name: variable.get("value", "postgresql+asyncpg://aiops@postgres/aiops" if name.endswith("URL") else "")
        for name, variable in _env(_container(engine)).items()
    }
    settings = load_settings(environ)
    assert settings.http_host == "0.0.0.0"
    assert settings.http_port == 8080
    assert str(settings.playbook_dir) == "/etc/aiops/playbooks"


def test_probes_ask_the_engine_if_it_lives_and_is_ready_and_the_model_server_if_it_lives() -> None:
    objects = _render()
    engine = _container(_one(objects, "Deployment", "engine"))
    assert engine["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert engine["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert engine["ports"] == [{"name": "http", "containerPort": 8080}]
    server = _container(_one(objects, "Deployment", "model-server"))
    assert server["livenessProbe"]["httpGet"]["path"] == server["readinessProbe"]["httpGet"]["path"] == "/healthz"


def test_every_pod_runs_as_non_root_on_a_read_only_root_file_system_within_resources() -> None:
    objects = _render("mlflow.deploy=true")
    deployments = [o for o in objects if o["kind"] == "Deployment"]
    assert {d["metadata"]["labels"]["app.kubernetes.io/component"] for d in deployments} == {
        "engine",
        "model-server",
        "mlflow",
    }
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_a_disruption_budget_keeps_one_engine_only_when_there_is_more_than_one() -> None:
    budget = _one(_render(), "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    engine = _one(_render(), "Deployment", "engine")
    assert budget["spec"]["selector"]["matchLabels"] == engine["spec"]["selector"]["matchLabels"]
    assert "PodDisruptionBudget" not in _kinds(_render("engine.replicas=1"))


def test_the_services_select_their_own_pods() -> None:
    objects = _render()
    for component in ("engine", "model-server"):
        service = _one(objects, "Service", component)
        deployment = _one(objects, "Deployment", component)
        assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        _one(objects, "Service", "engine")["spec"]["selector"]
        != _one(objects, "Service", "model-server")["spec"]["selector"]
    )


def test_the_model_server_serves_the_champion_from_the_registry_and_is_scraped() -> None:
    objects = _render("mlflow.trackingUri=http://mlflow.ml:5000")
    server = _one(objects, "Deployment", "model-server")
    container = _container(server)
    assert container["command"] == ["python", "-m", "serving.model_server"]
    assert "--model-uri=models:/fraud-detector@champion" in container["args"]
    assert "--tracking-uri=http://mlflow.ml:5000" in container["args"]
    assert "--host=0.0.0.0" in container["args"]
    annotations = server["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "8080"
    # The engine's alias rollbacks change the registry the model server reads.
    engine_env = _env(_container(_one(objects, "Deployment", "engine")))
    assert engine_env["AIOPS_MLFLOW_TRACKING_URI"]["value"] == "http://mlflow.ml:5000"
    assert "mlflow" not in {o["metadata"]["labels"].get("app.kubernetes.io/component") for o in objects}


def test_the_chart_can_bring_its_own_mlflow_server_that_both_use() -> None:
    objects = _render("mlflow.deploy=true", "mlflow.trackingUri=")
    service = _one(objects, "Service", "mlflow")
    _one(objects, "Deployment", "mlflow")
    uri = f"http://{service['metadata']['name']}.aiops-system.svc:5000"
    assert f"--tracking-uri={uri}" in _container(_one(objects, "Deployment", "model-server"))["args"]
    assert _env(_container(_one(objects, "Deployment", "engine")))["AIOPS_MLFLOW_TRACKING_URI"]["value"] == uri
    assert "mlflow.trackingUri is empty and mlflow.deploy is false" in _refusal("mlflow.trackingUri=")


def test_scheduling_values_place_every_pod() -> None:
    objects = _render(
        "nodeSelector.type=kwok",
        "tolerations[0].key=kwok.x-k8s.io/node,tolerations[0].operator=Exists,tolerations[0].effect=NoSchedule",
        "mlflow.deploy=true",
    )
    for deployment in (o for o in objects if o["kind"] == "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["nodeSelector"] == {"type": "kwok"}
        assert pod["tolerations"][0]["key"] == "kwok.x-k8s.io/node"


def test_without_the_prometheus_operator_api_there_is_no_service_monitor_or_rule() -> None:
    assert not _kinds(_render()) & {"ServiceMonitor", "PrometheusRule"}
    assert not _kinds(_render("monitoring.create=never", api_versions=(MONITORING_API,))) & {
        "ServiceMonitor",
        "PrometheusRule",
    }


@pytest.mark.parametrize("how", ["api", "forced"])
def test_with_the_prometheus_operator_the_engine_is_scraped_and_the_shipped_rules_installed(how: str) -> None:
    objects = (
        _render("monitoring.labels.release=prom", api_versions=(MONITORING_API,))
        if how == "api"
        else _render("monitoring.create=always", "monitoring.labels.release=prom")
    )
    monitor = _one(objects, "ServiceMonitor")
    service = _one(objects, "Service", "engine")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics/"
    # The shipped rules select the engine by this job label.
    assert {"targetLabel": "job", "replacement": "aiops-engine"} in endpoint["relabelings"]

    rule = _one(objects, "PrometheusRule")
    shipped = [
        group
        for path in sorted((REPO / "helm" / "prometheus-rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
    ]
    assert rule["spec"]["groups"] == shipped


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("engine.replicas=two", "at '/engine/replicas': got string, want integer"),
        ("engine.mode=yolo", "at '/engine/mode': value must be one of 'live', 'dry-run', 'shadow'"),
        ("engine.database.password=hunter2", "at '/engine/database': additional properties 'password' not allowed"),
        ("engine.env.HTTP_PORT=1", "at '/engine/env': additional properties 'HTTP_PORT' not allowed"),
        ("modelServer.modelUri=fraud-detector", "at '/modelServer/modelUri': 'fraud-detector' does not match"),
        ("monitoring.create=sometimes", "at '/monitoring/create': value must be one of 'auto', 'always', 'never'"),
        ("podSecurityContext.runAsNonRoot=false", "at '/podSecurityContext/runAsNonRoot'"),
    ],
)
def test_the_values_schema_refuses_a_bad_value_with_a_clear_error(value: str, complaint: str) -> None:
    refusal = _refusal(value)
    assert "values don't meet the specifications of the schema" in refusal
    assert complaint in refusal


def test_a_setting_the_chart_owns_cannot_be_set_twice() -> None:
    assert "AIOPS_MODE is set by the chart" in _refusal("engine.env.AIOPS_MODE=live")


def _value_paths(values: dict[str, Any], prefix: str = "") -> set[str]:
    paths = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        paths.add(path)
        if isinstance(value, dict):
            paths |= _value_paths(value, f"{path}.")
    return paths


def test_the_readme_documents_every_value_and_no_other() -> None:
    values = _value_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    rows = [line for line in (CHART / "README.md").read_text().splitlines() if line.startswith("| `")]
    documented = {row.split("`")[1] for row in rows}
    assert documented <= values, f"documented but not values: {documented - values}"
    leaves = {path for path in values if not any(other.startswith(f"{path}.") for other in values)}
    undocumented = {leaf for leaf in leaves if not any(leaf == d or leaf.startswith(f"{d}.") for d in documented)}
    assert not undocumented, f"values missing from the README's table: {sorted(undocumented)}"


def test_the_sync_script_restores_a_drifted_copy(tmp_path: Path) -> None:
    # Run on a copy of the sources and the script, so the working tree is left as it is.
    for part in ("playbooks", "helm/prometheus-rules", "dashboards", "helm/aiops-engine/hack"):
        shutil.copytree(REPO / part, tmp_path / part)
    chart = tmp_path / "helm" / "aiops-engine"
    stale = chart / "files" / "playbooks" / "removed-playbook.yaml"
    stale.parent.mkdir(parents=True)
    stale.write_text("name: removed-playbook\n")
    subprocess.run(["bash", str(chart / "hack" / "sync-files.sh")], check=True, capture_output=True)
    _same_files(chart / "files" / "playbooks", tmp_path / "playbooks", "*.yaml")
    _same_files(chart / "files" / "prometheus-rules", tmp_path / "helm" / "prometheus-rules", "*.yml")
    _same_files(chart / "files" / "dashboards", tmp_path / "dashboards", "*.json")


def test_each_engine_replica_is_named_after_its_pod_in_the_action_ledger() -> None:
    # A container restarted in the same pod then takes its own unfinished steps over at once.
    engine_env = _env(_container(_one(_render(), "Deployment", "engine")))
    assert engine_env["AIOPS_REPLICA_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
