import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.incident_desk import MAX_SNOOZE_S, IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import FakeClock
from engine.domain.events import IncidentChange, IncidentChangeKind, SeriesKey
from tests.engine.adapters.tokens import BOOK, bearer
from tests.engine.factories import anomaly, incident

NOW = 1_800_000_000.0


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    opened = await SqlStore.open(database_url)
    await opened.apply_change(IncidentChange(IncidentChangeKind.OPENED, incident(), 100.0, anomaly(100.0)))
    yield opened
    await opened.close()


@pytest.fixture
async def client(store: SqlStore) -> AsyncIterator[httpx.AsyncClient]:
    desk = IncidentDesk(store, IncidentManager(IncidentPolicy()), FakeClock(NOW))
    app = create_app(store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK, desk=desk)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(Role.RESPONDER)
    ) as http:
        yield http


async def _state(client: httpx.AsyncClient) -> str:
    return str((await client.get("/api/v1/incidents/inc-1")).json()["state"])


async def test_the_lifecycle_and_its_timeline(client: httpx.AsyncClient) -> None:
    acked = await client.post("/api/v1/incidents/inc-1/ack", json={"comment": "looking"})
    assert (acked.status_code, acked.json()["state"]) == (200, "acknowledged")
    assert (await client.post("/api/v1/incidents/inc-1/ack", json={})).status_code == 409
    assert (await client.post("/api/v1/incidents/inc-1/unack", json={})).json()["state"] == "open"
    assert (await client.post("/api/v1/incidents/inc-1/comment", json={"comment": "feature store is slow"})).is_success
    resolved = await client.post("/api/v1/incidents/inc-1/resolve", json={"comment": "fixed upstream"})
    assert resolved.json()["state"] == "resolved"
    assert resolved.json()["resolved_at"].startswith("2027-01-15")
    conflict = await client.post("/api/v1/incidents/inc-1/ack", json={})
    assert conflict.status_code == 409
    assert "is resolved" in conflict.json()["detail"]
    timeline = (await client.get("/api/v1/incidents/inc-1")).json()["timeline"]
    assert [e["kind"] for e in timeline] == ["opened", "acknowledged", "unacknowledged", "commented", "resolved"]
    assert timeline[1]["detail"] == {"by": "test-responder", "comment": "looking"}


async def test_new_signals_keep_an_acknowledgement(client: httpx.AsyncClient, store: SqlStore) -> None:
    await client.post("/api/v1/incidents/inc-1/ack", json={})
    updated = replace(incident(), signal_count=3, last_signal_at=160.0)
    await store.apply_change(IncidentChange(IncidentChangeKind.UPDATED, updated, 160.0, anomaly(160.0)))
    assert await _state(client) == "acknowledged"
    assert (await client.get("/api/v1/incidents/inc-1")).json()["signal_count"] == 3


async def test_of_two_concurrent_acknowledgements_exactly_one_wins(client: httpx.AsyncClient) -> None:
    first, second = await asyncio.gather(
        client.post("/api/v1/incidents/inc-1/ack", json={}),
        client.post("/api/v1/incidents/inc-1/ack", json={}, headers=bearer(Role.ADMIN)),
    )
    assert sorted([first.status_code, second.status_code]) == [200, 409]


async def test_snooze_until_a_future_time(client: httpx.AsyncClient) -> None:
    snoozed = await client.post("/api/v1/incidents/inc-1/snooze", json={"until": "2027-01-15T12:00:00Z"})
    assert snoozed.json()["snoozed_until"] == "2027-01-15T12:00:00Z"
    past = await client.post("/api/v1/incidents/inc-1/snooze", json={"until": "2020-01-01T00:00:00Z"})
    assert past.status_code == 409


async def test_decisions_whose_fields_all_have_defaults_need_no_body(client: httpx.AsyncClient) -> None:
    assert (await client.post("/api/v1/incidents/inc-1/ack")).json()["state"] == "acknowledged"
    assert (await client.post("/api/v1/incidents/inc-1/unack")).json()["state"] == "open"
    assert (await client.post("/api/v1/incidents/inc-1/resolve")).json()["state"] == "resolved"
    timeline = (await client.get("/api/v1/incidents/inc-1")).json()["timeline"]
    assert [e["detail"] for e in timeline[1:]] == [{"by": "test-responder"}] * 3


@pytest.mark.parametrize("decision", ["comment", "snooze"])
async def test_decisions_with_a_required_field_name_it_when_the_body_is_missing(
    client: httpx.AsyncClient, decision: str
) -> None:
    response = await client.post(f"/api/v1/incidents/inc-1/{decision}")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]


async def test_a_snooze_lasts_at_most_a_week(client: httpx.AsyncClient) -> None:
    week = NOW + MAX_SNOOZE_S
    at_most = await client.post("/api/v1/incidents/inc-1/snooze", json={"until": _iso(week)})
    assert at_most.status_code == 200
    for until in (week + 1, NOW + 365 * 86400, datetime(9999, 12, 31, tzinfo=UTC).timestamp()):
        longer = await client.post("/api/v1/incidents/inc-1/snooze", json={"until": _iso(until)})
        assert longer.status_code == 409
    assert (await client.get("/api/v1/incidents/inc-1")).json()["snoozed_until"] == _iso(week).replace("+00:00", "Z")


async def test_a_resolved_incident_cannot_be_snoozed(client: httpx.AsyncClient) -> None:
    await client.post("/api/v1/incidents/inc-1/resolve")
    refused = await client.post("/api/v1/incidents/inc-1/snooze", json={"until": _iso(NOW + 3600)})
    assert refused.status_code == 409
    detail = (await client.get("/api/v1/incidents/inc-1")).json()
    assert detail["snoozed_until"] is None
    assert [e["kind"] for e in detail["timeline"]] == ["opened", "resolved"]


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@pytest.mark.parametrize(
    ("path", "body", "headers", "status"),
    [
        ("/api/v1/incidents/inc-1/ack", {}, bearer(Role.VIEWER), 403),
        ("/api/v1/incidents/inc-1/ack", {}, {"Authorization": ""}, 401),
        ("/api/v1/incidents/nope/ack", {}, None, 404),
        ("/api/v1/incidents/inc-1/comment", {"comment": ""}, None, 422),
        ("/api/v1/incidents/inc-1/snooze", {"until": "tomorrow"}, None, 422),
        ("/api/v1/incidents/inc-1/snooze", {"until": "2027-01-15T12:00:00"}, None, 422),
        ("/api/v1/incidents/inc-1/ack", {"comment": "x" * 2001}, None, 422),
        ("/api/v1/incidents/inc-1/snooze", {"until": "0001-01-01T00:00:00+14:00"}, None, 409),
        ("/api/v1/incidents/inc-1/snooze", {"until": "9999-12-31T23:59:59-14:00"}, None, 409),
        ("/api/v1/incidents/inc-1/snooze", {"until": "2027-01-15T12:00:00Z", "for": "ever"}, None, 422),
        ("/api/v1/incidents/inc-1/ack", [], None, 422),
    ],
)
async def test_bad_decisions_are_client_errors(
    client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str] | None, status: int
) -> None:
    assert (await client.post(path, json=body, headers=headers)).status_code == status


@pytest.mark.parametrize("decision", ["ack", "unack", "resolve", "comment", "snooze"])
@pytest.mark.parametrize(
    "content",
    [b'{"comment": "\\ud800"}', b'{"comment": "x", "until": "2027-01-15T12:00:00\\udfffZ"}', b'{"comment": NaN}'],
    ids=["lone-surrogate", "surrogate-in-time", "nan"],
)
async def test_text_that_is_not_unicode_and_numbers_that_are_not_finite_are_refused(
    client: httpx.AsyncClient, decision: str, content: bytes
) -> None:
    response = await client.post(
        f"/api/v1/incidents/inc-1/{decision}", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"
    assert [e["kind"] for e in (await client.get("/api/v1/incidents/inc-1")).json()["timeline"]] == ["opened"]


async def test_resolving_lets_new_signals_open_a_new_incident(store: SqlStore) -> None:
    manager = IncidentManager(IncidentPolicy(min_signals=1))
    # Not the fixture's series, whose incident is open: an opening of it would join that one.
    series = SeriesKey.of("model_request_errors_ratio", {"model": "fraud-detector"})
    [opened] = manager.observe(anomaly(0.0, series=series))
    await store.apply_change(opened)
    await IncidentDesk(store, manager, FakeClock(NOW)).resolve(opened.incident.id, by="alice")
    [again] = manager.observe(anomaly(60.0, series=series))
    assert again.kind is IncidentChangeKind.OPENED
    assert again.incident.id != opened.incident.id


async def test_two_replicas_acknowledging_at_once_one_wins(database_url: str) -> None:
    first, second = await SqlStore.open(database_url), await SqlStore.open(database_url)
    await first.apply_change(IncidentChange(IncidentChangeKind.OPENED, incident(), 100.0, anomaly(100.0)))
    desks = [IncidentDesk(store, IncidentManager(IncidentPolicy()), FakeClock(NOW)) for store in (first, second)]
    outcomes = await asyncio.gather(
        *(desk.acknowledge("inc-1", by=f"replica-{i}") for i, desk in enumerate(desks)), return_exceptions=True
    )
    assert sorted(type(o).__name__ for o in outcomes) == ["ConflictError", "Incident"]
    await first.close()
    await second.close()
