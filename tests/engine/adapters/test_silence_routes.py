"""The silences API: responders silence a signal for a while, everyone on call sees it, input is validated."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.silences import SilenceBook, SilenceDesk
from engine.domain.clock import FakeClock
from tests.engine.adapters.tokens import BOOK, bearer


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    store = await SqlStore.open(database_url)
    clock = FakeClock(1_800_000_000.0)
    silences = SilenceDesk(store, SilenceBook(clock), clock)
    app = create_app(
        store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK, silences=silences
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield http
    await store.close()


async def test_silence_list_and_end(client: httpx.AsyncClient) -> None:
    body = {
        "metric": "model_request_latency_p99_seconds",
        "matchers": ['model="fraud"'],
        "duration": "2h",
        "comment": "planned failover",
    }
    created = await client.post("/api/v1/silences", json=body, headers=bearer(Role.RESPONDER))
    assert created.status_code == 201, created.text
    silence = created.json()
    assert (silence["created_by"], silence["matchers"]) == ("test-responder", ['model="fraud"'])
    assert silence["ends_at"] == "2027-01-15T10:00:00Z"

    listed = await client.get("/api/v1/silences", headers=bearer(Role.VIEWER))
    assert [s["id"] for s in listed.json()] == [silence["id"]]

    ended = await client.delete(f"/api/v1/silences/{silence['id']}", headers=bearer(Role.RESPONDER))
    assert ended.status_code == 200
    assert (await client.get("/api/v1/silences", headers=bearer(Role.VIEWER))).json() == []
    again = await client.delete(f"/api/v1/silences/{silence['id']}", headers=bearer(Role.RESPONDER))
    assert again.status_code == 409
    missing = await client.delete("/api/v1/silences/sil-nope", headers=bearer(Role.RESPONDER))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"matchers": ["model"], "duration": "1h", "comment": "x"}, "invalid matcher"),
        ({"duration": "1h", "comment": "x"}, "needs a metric, label matchers, or both"),
        ({"metric": "m", "duration": "31d", "comment": "x"}, "at most 30 days"),
        ({"metric": "m", "duration": "1h", "comment": ""}, "comment"),
        ({"metric": "m", "duration": "soon", "comment": "x"}, "duration"),
        ({"metric": "m", "duration": "1h", "comment": "x", "until": "tomorrow"}, "until"),
    ],
)
async def test_bad_silences_are_refused_with_the_reason(
    client: httpx.AsyncClient, body: dict[str, object], fragment: str
) -> None:
    refused = await client.post("/api/v1/silences", json=body, headers=bearer(Role.RESPONDER))
    assert refused.status_code == 422
    assert fragment in refused.text


async def test_viewers_cannot_silence(client: httpx.AsyncClient) -> None:
    body = {"metric": "m", "duration": "1h", "comment": "x"}
    assert (await client.post("/api/v1/silences", json=body, headers=bearer(Role.VIEWER))).status_code == 403
    assert (await client.post("/api/v1/silences", json=body)).status_code == 401


async def test_text_that_is_not_unicode_is_refused(client: httpx.AsyncClient) -> None:
    content = b'{"metric": "m", "matchers": [], "duration": "2h", "comment": "\\ud800"}'
    created = await client.post(
        "/api/v1/silences",
        content=content,
        headers={"Content-Type": "application/json"} | bearer(Role.RESPONDER),
    )
    assert created.status_code == 422
    assert (await client.get("/api/v1/silences", headers=bearer(Role.VIEWER))).json() == []
