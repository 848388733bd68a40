"""Shipped dashboards and provisioning are tested like code: each dashboard survives the Grafana Foundation SDK's
dashboard model (so every key is one Grafana knows), the layout is sound, every datasource it names is provisioned,
and every query names metrics and label values the engine and the model server really export."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.cog.runtime import Runtime
from grafana_foundation_sdk.models.dashboard import Dashboard, VariableType
from ruamel.yaml import YAML

from engine.core.actions.catalogue import CATALOGUE
from engine.domain.events import ActionMode, ActionStatus, IncidentChangeKind, IncidentState, Severity
from tests.dashboards.panels import DASHBOARDS
from tests.dashboards.registries import EngineRegistry, ModelServerRegistry, exported_series_names

ROOT = Path(__file__).resolve().parents[2] / "dashboards"

DATASOURCES = ROOT / "datasources.yaml"
PROVIDERS = ROOT / "provisioning.yaml"
GRID_WIDTH = 24
# Grafana's own annotations and alerts datasource; it exists in every Grafana without provisioning.
GRAFANA_BUILT_IN = "-- Grafana --"
METRIC = re.compile(r"\b(?:aiops|model_server)_[a-z_]+\b")
MATCHER = re.compile(r'\b([a-z_]+)\s*(=~|=|!=|!~)\s*"([^"]*)"')
# Every value a query may select, by label; a typo in a matcher would show an empty panel forever.
LABEL_VALUES = {
    "status": {status.value for status in ActionStatus},
    "kind": {kind.value for kind in IncidentChangeKind},
    "mode": {mode.value for mode in ActionMode},
    "severity": {severity.label for severity in Severity},
    "action": set(CATALOGUE),
    "stage": {"predict", "reload"},
    "state": {state.value for state in IncidentState},
}

register_default_plugins()


def _load(path: Path) -> dict[str, Any]:
    model = json.loads(path.read_text())
    assert isinstance(model, dict)
    return model


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def _datasource_refs(node: object) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


def _lost(original: object, parsed: object, where: str) -> Iterator[str]:
    """What of ``original`` did not survive a trip through the SDK's model (``parsed`` may add defaults)."""
    if isinstance(original, dict):
        if not isinstance(parsed, dict):
            yield f"{where}: became {parsed!r}"
            return
        for key, value in original.items():
            if key not in parsed:
                yield f"{where}.{key}: not part of Grafana's model"
            else:
                yield from _lost(value, parsed[key], f"{where}.{key}")
    elif isinstance(original, list):
        if not isinstance(parsed, list) or len(parsed) != len(original):
            yield f"{where}: list changed"
            return
        for number, (value, parsed_value) in enumerate(zip(original, parsed, strict=True)):
            yield from _lost(value, parsed_value, f"{where}[{number}]")
    elif original != parsed:
        yield f"{where}: {original!r} became {parsed!r}"


def _provisioned_datasources() -> dict[str, str]:
    """uid -> plugin type of every provisioned datasource."""
    found: dict[str, str] = {}
    document = YAML(typ="safe").load(DATASOURCES)
    assert document["apiVersion"] == 1
    for datasource in document["datasources"]:
        assert datasource["uid"] not in found, f"datasource uid {datasource['uid']} twice"
        found[datasource["uid"]] = datasource["type"]
    return found


def test_there_is_a_dashboard_for_the_engine_the_serving_stack_and_incidents() -> None:
    assert {path.stem for path in DASHBOARDS} == {"aiops-engine-overview", "aiops-serving", "aiops-incidents"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_survives_the_grafana_sdk_model(path: Path) -> None:
    original = _load(path)
    parsed = json.loads(json.dumps(Dashboard.from_json(original), cls=JSONEncoder))
    assert list(_lost(original, parsed, path.stem)) == []


def test_the_sdk_check_catches_a_key_grafana_does_not_know() -> None:
    original = _load(DASHBOARDS[0])
    original["panels"][1]["gridpos"] = original["panels"][1].pop("gridPos")
    parsed = json.loads(json.dumps(Dashboard.from_json(original), cls=JSONEncoder))
    assert any("gridpos: not part of Grafana's model" in problem for problem in _lost(original, parsed, "d"))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_header(path: Path) -> None:
    dashboard = _load(path)
    assert dashboard["uid"] == path.stem, "the uid is the file name, so links and pushes stay stable"
    assert 0 < len(dashboard["uid"]) <= 40
    assert dashboard["title"]
    assert dashboard["schemaVersion"] >= 39
    assert "aiops" in dashboard["tags"]
    known_panels = set(Runtime().panelcfg_variants) | {"row"}
    for panel in _panels(dashboard):
        assert panel["type"] in known_panels, panel["title"]
    for variable in dashboard["templating"]["list"]:
        assert variable["type"] in set(VariableType)


def test_dashboard_uids_are_unique() -> None:
    uids = [_load(path)["uid"] for path in DASHBOARDS]
    assert len(uids) == len(set(uids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panel_ids_are_unique(path: Path) -> None:
    ids = [panel["id"] for panel in _panels(_load(path))]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_lie_within_the_grid_and_do_not_overlap(path: Path) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in _panels(_load(path)):
        grid = panel["gridPos"]
        assert min(grid["x"], grid["y"]) >= 0, panel["title"]
        assert min(grid["w"], grid["h"]) >= 1, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        for dx in range(grid["w"]):
            for dy in range(grid["h"]):
                cell = (grid["x"] + dx, grid["y"] + dy)
                assert cell not in cells, f"{panel['title']!r} overlaps {cells[cell]!r}"
                cells[cell] = panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_datasource_is_provisioned(path: Path) -> None:
    provisioned = _provisioned_datasources()
    dashboard = _load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"] if v["type"] == "datasource"}
    for variable in variables.values():
        # The variable lists datasources of its plugin type and starts on the provisioned one.
        assert provisioned.get(variable["current"]["value"]) == variable["query"], variable["name"]
    refs = list(_datasource_refs(dashboard))
    assert refs
    for ref in refs:
        uid = ref["uid"]
        if uid == GRAFANA_BUILT_IN:
            assert ref["type"] == "grafana"
        elif uid.startswith("${"):
            variable = variables[uid.removeprefix("${").removesuffix("}")]
            assert variable["query"] == ref["type"]
        else:
            assert provisioned.get(uid) == ref["type"], uid


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_metrics_and_label_values_that_exist(path: Path, tmp_path: Path) -> None:
    exported = exported_series_names(EngineRegistry(tmp_path / "playbooks").registry)
    serving = ModelServerRegistry()
    serving.feed()  # so that each labelled histogram shows which series it really has
    exported |= exported_series_names(serving.registry)
    targets = list(_targets(_load(path)))
    assert targets
    for title, expr in targets:
        used = set(METRIC.findall(expr))
        assert used, f"{title}: query names no aiops or model server metric"
        assert used <= exported, f"{title}: unknown metrics {used - exported}"
        for label, _, value in MATCHER.findall(expr):
            for alternative in value.split("|"):
                assert alternative in LABEL_VALUES[label], f"{title}: no series has {label}={alternative!r}"


def test_incident_dashboard_shows_the_engines_annotations() -> None:
    dashboard = _load(ROOT / "aiops-incidents.json")
    queries = [a for a in dashboard["annotations"]["list"] if not a.get("builtIn")]
    # grafana_annotate tags every annotation "aiops" (see engine/adapters/actions/grafana_annotations.py).
    assert [(q["target"]["type"], q["target"]["tags"]) for q in queries] == [("tags", ["aiops"])]
    assert all(q["datasource"]["uid"] == GRAFANA_BUILT_IN and q["enable"] for q in queries)
    lists = [p for p in _panels(dashboard) if p["type"] == "annolist"]
    assert [p["options"]["tags"] for p in lists] == [["aiops"]]


def test_dashboard_provider_serves_this_folder() -> None:
    document = YAML(typ="safe").load(PROVIDERS)
    assert document["apiVersion"] == 1
    providers = document["providers"]
    assert providers
    for provider in providers:
        assert provider["type"] == "file"
        assert provider["options"]["path"].startswith("/")
        assert provider["folderUid"]
