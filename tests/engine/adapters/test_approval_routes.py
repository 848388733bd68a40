from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.api.strict_json import MAX_JSON_BODY_BYTES
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.actions.executor import ActionExecutor
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import FakeClock
from engine.domain.events import ActionMode, ActionRequest, IncidentChange, IncidentChangeKind
from tests.engine.adapters.tokens import BOOK, bearer
from tests.engine.factories import anomaly, incident


def _waiting(request_id: str) -> ActionRequest:
    return ActionRequest.create(
        id=request_id,
        incident_id="inc-1",
        playbook="feature-drift-retrain",
        step=0,
        action="create_job",
        params={"namespace": "serving", "template": "retrain", "model": "fraud"},
        mode=ActionMode.DRY_RUN,
        requested_at=0.0,
        approval_timeout_s=3600.0,
        explanation={"trigger": {"series": "model_feature_psi"}},
    )


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    store = await SqlStore.open(database_url)
    executor = ActionExecutor(store.ledger, FakeClock(1000.0), {}, owner="test")
    for request_id in ("act-a", "act-b"):
        await executor.execute(_waiting(request_id))
    app = create_app(
        store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, executor=executor, tokens=BOOK
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(Role.RESPONDER)
    ) as http:
        yield http
    await store.close()


async def test_waiting_steps_are_listed_with_their_explanation(client: httpx.AsyncClient) -> None:
    pending = (await client.get("/api/v1/approvals")).json()
    assert sorted(p["id"] for p in pending) == ["act-a", "act-b"]
    assert pending[0]["status"] == "awaiting-approval"
    assert pending[0]["explanation"] == {"trigger": {"series": "model_feature_psi"}}
    assert pending[0]["approval_due_at"].startswith("1970-01-01T01:16:40")


async def test_approve_runs_the_step_once_and_records_who(client: httpx.AsyncClient) -> None:
    approved = await client.post("/api/v1/approvals/act-a/approve", json={"comment": "ok"})
    assert approved.status_code == 200
    assert approved.json()["status"] == "dry-run"
    assert approved.json()["detail"].startswith("would create job from template 'retrain'")
    again = await client.post("/api/v1/approvals/act-a/approve", json={}, headers=bearer(Role.ADMIN))
    assert again.status_code == 409
    [record] = [a for a in (await client.get("/api/v1/actions")).json() if a["id"] == "act-a"]
    assert (record["status"], record["decided_by"]) == ("dry-run", "test-responder")
    assert [p["id"] for p in (await client.get("/api/v1/approvals")).json()] == ["act-b"]


async def test_reject_keeps_the_step_from_running(client: httpx.AsyncClient) -> None:
    rejected = await client.post("/api/v1/approvals/act-b/reject", json={"comment": "drift is expected"})
    assert rejected.json() == {
        "id": "act-b",
        "status": "rejected",
        "detail": "rejected by test-responder (drift is expected)",
    }
    assert (await client.post("/api/v1/approvals/act-b/approve", json={})).status_code == 409


@pytest.mark.parametrize("verdict", ["approve", "reject"])
async def test_a_decision_needs_no_body(client: httpx.AsyncClient, verdict: str) -> None:
    decided = await client.post(f"/api/v1/approvals/act-a/{verdict}")
    assert decided.status_code == 200
    assert decided.json()["status"] == ("dry-run" if verdict == "approve" else "rejected")


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/api/v1/approvals/nope/approve", {}, 404),
        ("/api/v1/approvals/act-a/approve", [], 422),
        ("/api/v1/approvals/act-a/approve", {"comment": 5}, 422),
        ("/api/v1/approvals/act-a/approve", {"by": "someone else"}, 422),
        ("/api/v1/approvals/bad%20id/approve", {}, 422),
    ],
)
async def test_bad_decisions_are_client_errors(client: httpx.AsyncClient, path: str, body: object, status: int) -> None:
    assert (await client.post(path, json=body)).status_code == status


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"null", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b'{"comment": "unterminated', "application/json"),
        (b'{"comment": "' + b"x" * 3000 + b'"}', "application/json"),
        (b"comment=ok", "application/x-www-form-urlencoded"),
        (b"[" * 5000 + b"]" * 5000, "application/json"),
        (b'{"comment": "\\ud800"}', "application/json"),
        (b'{"comment": "ok", "extra": "\\udfff"}', "application/json"),
    ],
    ids=["null", "not-utf8", "truncated", "too-long", "a-form", "deeply-nested", "lone-surrogate", "surrogate-echoed"],
)
async def test_hostile_decision_bodies_are_client_errors(
    client: httpx.AsyncClient, content: bytes, content_type: str
) -> None:
    response = await client.post(
        "/api/v1/approvals/act-a/approve", content=content, headers={"Content-Type": content_type}
    )
    assert response.status_code in (400, 422)
    assert [p["id"] for p in (await client.get("/api/v1/approvals")).json()] == ["act-a", "act-b"]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_body_past_its_bound_is_refused_unread(client: httpx.AsyncClient, declared: bool) -> None:
    body = b'{"comment": "' + b"c" * MAX_JSON_BODY_BYTES + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 65536):
            yield body[start : start + 65536]

    response = await client.post(
        "/api/v1/approvals/act-a/approve",
        content=body if declared else chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert (response.status_code, response.json()["detail"]["error"]) == (413, "body_too_large")
    assert [p["id"] for p in (await client.get("/api/v1/approvals")).json()] == ["act-a", "act-b"]


async def test_viewers_cannot_decide_and_strangers_cannot_look(client: httpx.AsyncClient) -> None:
    as_viewer = await client.post("/api/v1/approvals/act-a/approve", json={}, headers=bearer(Role.VIEWER))
    assert as_viewer.status_code == 403
    assert "needs the responder role" in as_viewer.json()["detail"]
    assert (await client.get("/api/v1/approvals", headers={"Authorization": ""})).status_code == 401
    assert [p["id"] for p in (await client.get("/api/v1/approvals", headers=bearer(Role.VIEWER))).json()] == [
        "act-a",
        "act-b",
    ]


async def test_a_step_of_a_resolved_incident_can_be_rejected_but_not_approved(database_url: str) -> None:
    store = await SqlStore.open(database_url)
    await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, incident(), 0.0, anomaly(0.0)))
    clock = FakeClock(1000.0)
    executor = ActionExecutor(store.ledger, clock, {}, owner="test")
    for request_id in ("act-a", "act-b"):
        await executor.execute(_waiting(request_id))
    desk = IncidentDesk(store, IncidentManager(IncidentPolicy()), clock)
    await desk.resolve("inc-1", by="alice")
    app = create_app(
        store=store,
        metrics=EngineMetrics(CollectorRegistry()),
        status=dict,
        executor=executor,
        tokens=BOOK,
        desk=desk,
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t", headers=bearer(Role.RESPONDER)
    ) as http:
        approved = await http.post("/api/v1/approvals/act-a/approve", json={})
        assert approved.status_code == 409
        assert "inc-1" in approved.json()["detail"]
        [waiting] = [a for a in (await http.get("/api/v1/actions")).json() if a["id"] == "act-a"]
        assert waiting["status"] == "awaiting-approval"
        rejected = await http.post("/api/v1/approvals/act-b/reject", json={})
        assert (rejected.status_code, rejected.json()["status"]) == (200, "rejected")
    await store.close()
