"""The on-call page over HTTP (the browser test in tests/e2e drives it in a real Chromium)."""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.actions.executor import ActionExecutor
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import FakeClock
from engine.domain.events import ActionMode, ActionRequest, IncidentChange, IncidentChangeKind
from tests.engine.adapters.tokens import BOOK, SECRETS
from tests.engine.factories import anomaly, incident


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'page.db'}")
    await store.apply_change(IncidentChange(IncidentChangeKind.OPENED, incident(), 100.0, anomaly(100.0)))
    clock = FakeClock(1_800_000_000.0)
    executor = ActionExecutor(store.ledger, clock, {}, owner="test")
    await executor.execute(
        ActionRequest.create(
            id="act-1",
            incident_id="inc-1",
            playbook="feature-drift-retrain",
            step=0,
            action="create_job",
            params={"namespace": "serving", "template": "retrain", "model": "fraud"},
            mode=ActionMode.DRY_RUN,
            requested_at=100.0,
            approval_timeout_s=3600.0,
        )
    )
    desk = IncidentDesk(store, IncidentManager(IncidentPolicy()), clock)
    app = create_app(
        store=store, metrics=EngineMetrics(CollectorRegistry()), status=dict, tokens=BOOK, executor=executor, desk=desk
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        yield http
    await store.close()


async def _login(page: httpx.AsyncClient, role: Role) -> None:
    response = await page.post("/ui/login", data={"token": SECRETS[role]})
    assert response.status_code == 303
    page.cookies.set("aiops_token", SECRETS[role], path="/ui")


async def test_without_login_the_page_sends_you_to_log_in(page: httpx.AsyncClient) -> None:
    response = await page.get("/ui/")
    assert (response.status_code, response.headers["location"]) == (303, "/ui/login")


async def test_a_wrong_token_is_refused(page: httpx.AsyncClient) -> None:
    response = await page.post("/ui/login", data={"token": "nope"})
    assert response.status_code == 401
    assert "That token is not valid." in response.text


async def test_login_sets_a_strict_http_only_cookie(page: httpx.AsyncClient) -> None:
    response = await page.post("/ui/login", data={"token": SECRETS[Role.RESPONDER]})
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


async def test_responders_ack_and_approve_from_the_page(page: httpx.AsyncClient) -> None:
    await _login(page, Role.RESPONDER)
    listing = (await page.get("/ui/")).text
    assert "inc-1" in listing
    assert "/ui/approvals/act-1/approve" in listing
    acked = await page.post("/ui/incidents/inc-1/ack", follow_redirects=True)
    assert "Acknowledged by test-responder." in acked.text
    assert '<strong id="state" class="state-acknowledged">acknowledged</strong>' in acked.text
    approved = await page.post("/ui/approvals/act-1/approve", follow_redirects=True)
    assert "create_job: dry-run - would create job from template" in approved.text
    assert "step approved" in approved.text  # the person's decision is in the incident's timeline
    assert "create_job (feature-drift-retrain, step 1)" in approved.text
    again = await page.post("/ui/approvals/act-1/approve", follow_redirects=True)
    assert "is not waiting for approval" in again.text


async def test_viewers_see_no_buttons_and_cannot_decide(page: httpx.AsyncClient) -> None:
    await _login(page, Role.VIEWER)
    detail = (await page.get("/ui/incidents/inc-1")).text
    assert "Acknowledge" not in detail
    refused = await page.post("/ui/incidents/inc-1/ack", follow_redirects=True)
    assert "may look but not decide" in refused.text
    assert '<strong id="state" class="state-open">open</strong>' in refused.text


async def test_html_in_data_is_escaped(page: httpx.AsyncClient) -> None:
    await _login(page, Role.RESPONDER)
    response = await page.get("/ui/", params={"flash": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;" in response.text


async def test_api_approvals_are_recorded_in_the_incident_timeline(page: httpx.AsyncClient) -> None:
    headers = {"Authorization": f"Bearer {SECRETS[Role.RESPONDER]}"}
    decided = await page.post("/api/v1/approvals/act-1/reject", json={"comment": "not today"}, headers=headers)
    assert decided.json()["status"] == "rejected"
    timeline = (await page.get("/api/v1/incidents/inc-1", headers=headers)).json()["timeline"]
    assert timeline[-1]["kind"] == "step rejected"
    assert timeline[-1]["detail"] == {
        "by": "test-responder",
        "comment": "create_job (feature-drift-retrain, step 1): not today",
    }
