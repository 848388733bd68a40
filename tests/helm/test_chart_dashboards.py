"""The chart ships the project's Grafana dashboards as ConfigMaps for the Grafana sidecar: one per dashboard,
labelled as the sidecar selects them, each holding the dashboard exactly as dashboards/ has it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helm.test_chart import CHART, HELM, REPO, _refusal, _render, _same_files

DASHBOARDS = REPO / "dashboards"
pytestmark = pytest.mark.skipif(
    not HELM.exists(), reason="helm is not built (scripts/services/kubernetes.sh build, run by make test)"
)


def _dashboard_maps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o
        for o in objects
        if o["kind"] == "ConfigMap" and o["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"
    ]


def test_the_chart_holds_the_dashboards_as_the_repository_has_them() -> None:
    _same_files(CHART / "files" / "dashboards", DASHBOARDS, "*.json")


def test_each_dashboard_is_a_configmap_the_grafana_sidecar_picks_up() -> None:
    maps = _dashboard_maps(_render())
    shipped = {path.name: path for path in DASHBOARDS.glob("*.json")}
    assert len(maps) == len(shipped) == 3
    found: dict[str, str] = {}
    for config_map in maps:
        metadata = config_map["metadata"]
        assert metadata["namespace"] == "aiops-system"
        assert metadata["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in metadata, "no folder is set by default"
        [(key, text)] = config_map["data"].items()
        assert metadata["name"] == f"aiops-aiops-engine-dashboard-{Path(key).stem}"
        found[key] = text
    assert set(found) == set(shipped)
    for key, text in found.items():
        assert json.loads(text) == json.loads(shipped[key].read_text()), key
        assert text == shipped[key].read_text().rstrip("\n"), f"{key} is not shipped byte for byte"


def test_label_value_and_folder_follow_the_values() -> None:
    maps = _dashboard_maps(
        _render(
            "dashboards.label=team_dashboards",
            "dashboards.labelValue=aiops",
            "dashboards.folder=AIOps engine",
            "dashboards.folderAnnotation=k8s-sidecar-target-directory",
        )
    )
    assert maps
    for config_map in maps:
        metadata = config_map["metadata"]
        assert metadata["labels"]["team_dashboards"] == "aiops"
        assert "grafana_dashboard" not in metadata["labels"]
        assert metadata["annotations"] == {"k8s-sidecar-target-directory": "AIOps engine"}


def test_grafana_folder_is_the_default_folder_annotation() -> None:
    [config_map, *_] = _dashboard_maps(_render("dashboards.folder=AIOps"))
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "AIOps"}


def test_dashboards_can_be_left_out() -> None:
    objects = _render("dashboards.enabled=false")
    assert objects
    assert _dashboard_maps(objects) == []


@pytest.mark.parametrize(
    "value",
    ["dashboards.labelValue=not a label value", "dashboards.label=", "dashboards.colour=blue"],
)
def test_the_schema_refuses_bad_dashboard_values(value: str) -> None:
    assert "values don't meet the specifications of the schema" in _refusal(value)
