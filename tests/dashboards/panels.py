"""The shipped dashboards' panel queries, named as a test id (dashboard uid, panel title, target refId)."""

from __future__ import annotations

import json
from pathlib import Path

DASHBOARDS = sorted((Path(__file__).resolve().parents[2] / "dashboards").glob("*.json"))


def panel_queries() -> list[tuple[str, str]]:
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{dashboard['uid']}: {panel['title']} ({target['refId']})", target["expr"]))
    return found
