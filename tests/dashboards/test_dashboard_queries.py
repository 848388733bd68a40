"""Every panel query of the shipped dashboards against a real Prometheus (``make test`` starts it with
scripts/services/prometheus.sh and exports where it is), scraping the engine's and the model server's registries
served from this process with one of each event they count, on a host with two GPUs as a fake NVML describes them.

``test_dashboards_live.py`` runs the same queries against a running engine and model server; this test adds what a
test host cannot produce for real: every label value the dashboards select, and the GPU panels without a GPU.
Grafana's interval variables are replaced by fixed durations, as Grafana would before sending the query.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest

from tests.dashboards.panels import panel_queries
from tests.dashboards.registries import EngineRegistry, ModelServerRegistry
from tests.support.scrape_target import ScrapeTarget

PROMETHEUS_URL = os.environ.get("AIOPS_TEST_PROMETHEUS_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS_URL is None,
        reason="AIOPS_TEST_PROMETHEUS_URL is not set (make test starts Prometheus; scripts/services/prometheus.sh)",
    ),
]
EXPORTER_PORT = int(os.environ.get("AIOPS_TEST_EXPORTER_PORT", "0"))
# What Grafana puts in place of its variables; rate windows must span several 1 s scrapes.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
WAIT_S = 30.0


def _concrete(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert not re.search(r"\$\w", expr), f"unreplaced variable in {expr}"
    return expr


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    engine = EngineRegistry(tmp_path_factory.mktemp("playbooks") / "playbooks")
    engine.feed()
    serving = ModelServerRegistry()
    serving.feed()
    with (
        ScrapeTarget(EXPORTER_PORT, lambda: generate_latest(engine.registry) + generate_latest(serving.registry)),
        httpx.Client(base_url=str(PROMETHEUS_URL), timeout=10.0) as client,
    ):
        yield client


def _query(client: httpx.Client, expr: str) -> dict[str, Any]:
    reply = client.get("/api/v1/query", params={"query": expr})
    body: dict[str, Any] = reply.json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    return body


def _series(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    """The result of ``expr``, waiting for the first scrapes to arrive; empty if none came within ``WAIT_S``."""
    deadline = time.monotonic() + WAIT_S
    while True:
        result: list[dict[str, Any]] = _query(client, expr)["data"]["result"]
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


@pytest.mark.parametrize(("panel", "expr"), panel_queries(), ids=[name for name, _ in panel_queries()])
def test_panel_query_returns_series_of_the_exported_metrics(prometheus: httpx.Client, panel: str, expr: str) -> None:
    concrete = _concrete(expr)
    assert _series(prometheus, concrete), f"{panel}: {concrete} returned no series"


def test_a_query_for_a_label_value_nobody_exports_returns_nothing(prometheus: httpx.Client) -> None:
    # The check above could not fail if every query returned something; this one shows that it can.
    assert _series(prometheus, 'aiops_actions_total{status="skipped"}')
    expr = _concrete('sum by (action) (increase(aiops_actions_total{status="refused"}[$__rate_interval]))')
    assert _query(prometheus, expr)["data"]["result"] == []
