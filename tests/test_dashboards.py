"""Shipped dashboards are tested like code: valid layout, and every query names a metric the engine exports."""

import json
import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.telemetry import EngineMetrics

DASHBOARDS = sorted((Path(__file__).resolve().parents[1] / "dashboards").glob("*.json"))
GRID_WIDTH = 24


def _exported_metric_names() -> set[str]:
    registry = CollectorRegistry()
    EngineMetrics(registry)
    names = set()
    for family in registry.collect():
        # Counters are exposed with a _total suffix; labelled ones have no samples until first used.
        names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_layout_is_valid(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"]
    assert dashboard["title"]
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= GRID_WIDTH, panel["title"]
        covered = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & covered, f"panel {panel['title']!r} overlaps another"
        cells |= covered
        assert panel["datasource"]["uid"] == "${datasource}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_query_uses_metrics_the_engine_exports(path: Path) -> None:
    exported = _exported_metric_names()
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel["targets"]:
            used = set(re.findall(r"\baiops_[a-z_]+", target["expr"]))
            assert used, f"{panel['title']}: query names no aiops metric"
            assert used <= exported, f"{panel['title']}: unknown metrics {used - exported}"
