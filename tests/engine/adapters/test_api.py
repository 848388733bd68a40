from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.correlation import CorrelationRules
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import FakeClock
from engine.domain.events import IncidentChange, IncidentChangeKind, SeriesKey
from tests.engine.adapters.tokens import BOOK, bearer
from tests.engine.factories import anomaly, incident


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, incident(), 100.0, anomaly(100.0)))
    metrics = EngineMetrics(CollectorRegistry())
    metrics.samples.inc(42)
    app = create_app(store=store, metrics=metrics, status=lambda: {"samples": 42}, tokens=BOOK)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=bearer(Role.VIEWER)
    ) as http:
        yield http
    await store.close()


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).json() == {"status": "ready"}


async def test_incidents_list_and_detail(client: httpx.AsyncClient) -> None:
    listed = (await client.get("/api/v1/incidents", params={"state": "open"})).json()
    assert [i["id"] for i in listed] == ["inc-1"]
    assert listed[0]["labels"] == {"model": "fraud-detector", "namespace": "serving"}
    detail = (await client.get("/api/v1/incidents/inc-1")).json()
    assert [entry["kind"] for entry in detail["timeline"]] == ["opened"]
    assert (await client.get("/api/v1/incidents", params={"state": "resolved"})).json() == []


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/api/v1/incidents/does-not-exist", 404),
        ("/api/v1/incidents?state=bogus", 422),
        ("/api/v1/incidents?limit=0", 422),
        ("/api/v1/incidents?limit=abc", 422),
        ("/api/v1/incidents/" + "x" * 65, 422),
        ("/api/v1/incidents/bad%20id", 422),
        ("/api/v1/actions?offset=-1", 422),
    ],
)
async def test_bad_requests_get_client_errors_not_500(client: httpx.AsyncClient, path: str, status: int) -> None:
    assert (await client.get(path)).status_code == status


async def test_metrics_are_served_from_the_given_registry(client: httpx.AsyncClient) -> None:
    body = (await client.get("/metrics/")).text
    assert "aiops_samples_total 42.0" in body


async def test_status_comes_from_the_provider(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/status")).json() == {"samples": 42}


@pytest.mark.parametrize("path", ["/api/v1/incidents", "/api/v1/incidents/inc-1", "/api/v1/actions", "/api/v1/status"])
async def test_reads_need_a_token(client: httpx.AsyncClient, path: str) -> None:
    missing = await client.get(path, headers={"Authorization": ""})
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert (await client.get(path, headers={"Authorization": "Bearer wrong"})).status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics/"])
async def test_probes_and_metrics_need_no_token(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(path, headers={"Authorization": ""})).status_code == 200


async def test_keyset_pages_walk_every_incident_once(tmp_path: Path) -> None:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'pages.db'}")
    for i in range(7):
        opened = incident(id=f"inc-{i}", opened_at=100.0 + (i // 2))  # ties on opened_at are broken by id
        await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, opened.opened_at))
    app = create_app(store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK)
    seen: list[str] = []
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(Role.VIEWER)
    ) as http:
        params: dict[str, str | int] = {"limit": 3}
        while True:
            page = await http.get("/api/v1/incidents", params=params)
            seen += [i["id"] for i in page.json()]
            if "x-next-cursor" not in page.headers:
                break
            params = {"limit": 3, "cursor": page.headers["x-next-cursor"]}
        assert (await http.get("/api/v1/incidents", params={"cursor": "!!not-ours"})).status_code == 422
    assert seen == ["inc-6", "inc-5", "inc-4", "inc-3", "inc-2", "inc-1", "inc-0"]
    await store.close()


async def test_the_detail_ranks_a_grouped_incident_s_signals_with_reasons(tmp_path: Path) -> None:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'grouped.db'}")
    rules = CorrelationRules.model_validate({"group_by": ["namespace", "workload"], "labels": {"workload": ["model"]}})
    manager = IncidentManager(IncidentPolicy(min_signals=1), rules)
    latency = SeriesKey.of("model_request_latency_p99_seconds", {"model": "fraud", "namespace": "serving"})
    traffic = SeriesKey.of("model_requests_per_second", {"model": "fraud", "namespace": "serving"})
    [opened] = manager.observe(anomaly(100.0, series=traffic))
    await store.apply_changes([opened, *manager.observe(anomaly(160.0, series=latency))])
    desk = IncidentDesk(store, manager, FakeClock(200.0))
    app = create_app(store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK, desk=desk)
    await store.add_signal_points(
        [(opened.incident.id, str(latency), 100.0, 0.1), (opened.incident.id, str(latency), 160.0, 0.9)]
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test", headers=bearer(Role.VIEWER)
    ) as http:
        detail = (await http.get(f"/api/v1/incidents/{opened.incident.id}")).json()
        points = (await http.get(f"/api/v1/incidents/{opened.incident.id}/points")).json()
        missing = await http.get("/api/v1/incidents/inc-none/points")
    await store.close()
    assert points == {str(latency): [[100.0, 0.1], [160.0, 0.9]]}
    assert missing.status_code == 404
    assert [entry["kind"] for entry in detail["timeline"]] == ["opened", "joined"]
    # Traffic began a minute before the latency, and it is a known cause of latency.
    assert [(c["rank"], c["name"], c["kind"]) for c in detail["causes"]] == [
        (1, "model_requests_per_second", "traffic"),
        (2, "model_request_latency_p99_seconds", "latency"),
    ]
    assert "traffic is a known cause of latency" in detail["causes"][0]["reasons"][0]
