"""The Helm chart is tested like code: it lints strictly and renders the least-privilege RBAC the engine's
actions need, from the same rules file the integration tests bind."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "aiops-engine"
HELM = REPO / ".bin" / "helm"
pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is not built (scripts/services/kubernetes.sh build, run by make test)"
)


def _helm(*args: str) -> str:
    return subprocess.run([str(HELM), *args], capture_output=True, text=True, check=True).stdout


def _render(*sets: str) -> list[dict[str, Any]]:
    flags = [flag for value in sets for flag in ("--set", value)]
    documents = yaml.safe_load_all(_helm("template", "aiops", str(CHART), "--namespace", "aiops-system", *flags))
    return [document for document in documents if document]


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
