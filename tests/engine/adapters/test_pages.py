"""The on-call page over HTTP (the browser test in tests/e2e drives it in a real Chromium)."""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import Role, TokenBook, hash_secret
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.adapters.web.incident_view import MAX_PICTURES
from engine.adapters.web.listing import PAGE_SIZE
from engine.adapters.web.pages import COOKIE, FLASHES
from engine.adapters.web.sessions import PageSessions
from engine.core.actions.executor import ActionExecutor
from engine.core.incident_desk import IncidentDesk
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.domain.clock import FakeClock
from engine.domain.events import (
    ActionMode,
    ActionRequest,
    Anomaly,
    IncidentChange,
    IncidentChangeKind,
    SeriesKey,
    Severity,
    Signal,
)
from tests.engine.adapters.tokens import BOOK, SECRETS, bearer
from tests.engine.factories import LATENCY, anomaly, incident

BASE = "http://oncall.test"
# What a browser sends with a form posted from one of the page's own pages.
SAME_ORIGIN = {"Origin": BASE, "Sec-Fetch-Site": "same-origin"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
LIFETIME_S = 3600.0


@dataclass
class Page:
    http: httpx.AsyncClient
    clock: FakeClock
    store: SqlStore

    async def log_in(self, role: Role) -> str:
        """Log in as ``role``; the form token of the new session."""
        response = await self.http.post("/ui/login", data={"token": SECRETS[role]}, headers=SAME_ORIGIN)
        assert response.status_code == 303
        return _csrf(await self.http.get("/ui/"))

    async def post(self, path: str, data: dict[str, str], headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(path, data=data, headers=SAME_ORIGIN if headers is None else headers)

    async def state(self) -> str:
        return str((await self.http.get("/api/v1/incidents/inc-1", headers=bearer(Role.VIEWER))).json()["state"])


def _csrf(response: httpx.Response) -> str:
    found = set(re.findall(r'name="csrf" value="([^"]*)"', response.text))
    assert len(found) == 1, found
    return found.pop()


def _flash(response: httpx.Response) -> str | None:
    found = re.findall(r'data-flash="([^"]*)"', response.text)
    return found[0] if found else None


def _set_cookie(response: httpx.Response) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(response.headers["set-cookie"])
    return cookie


@pytest.fixture
async def page(tmp_path: Path) -> AsyncIterator[Page]:
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
    sessions = PageSessions(key="k" * 32, lifetime_s=LIFETIME_S, clock=clock)
    app = create_app(
        store=store,
        metrics=EngineMetrics(CollectorRegistry()),
        status=dict,
        tokens=BOOK,
        executor=executor,
        desk=desk,
        page_sessions=sessions,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as http:
        yield Page(http, clock, store)
    await store.close()


async def test_without_login_the_page_sends_you_to_log_in(page: Page) -> None:
    response = await page.http.get("/ui/")
    assert (response.status_code, response.headers["location"]) == (303, "/ui/login")


async def test_a_wrong_token_is_refused(page: Page) -> None:
    response = await page.post("/ui/login", {"token": "nope"})
    assert response.status_code == 401
    assert 'data-error="invalid-token"' in response.text
    assert "set-cookie" not in response.headers


async def test_the_session_cookie_is_signed_strict_http_only_and_holds_no_token(page: Page) -> None:
    secret = SECRETS[Role.RESPONDER]
    response = await page.post("/ui/login", {"token": secret})
    morsel = _set_cookie(response)[COOKIE]
    assert morsel["httponly"] is True
    assert morsel["samesite"].lower() == "strict"
    assert (morsel["path"], morsel["max-age"]) == ("/ui", str(int(LIFETIME_S)))
    assert not morsel["secure"]  # plain HTTP here; see the HTTPS test
    assert secret not in morsel.value
    assert hash_secret(secret) not in morsel.value


async def test_the_session_cookie_is_secure_over_https(page: Page) -> None:
    https = {"Origin": "https://oncall.test", "Sec-Fetch-Site": "same-origin"}
    response = await page.http.post(
        "https://oncall.test/ui/login", data={"token": SECRETS[Role.RESPONDER]}, headers=https
    )
    assert _set_cookie(response)[COOKIE]["secure"] is True


async def test_responders_ack_and_approve_from_the_page(page: Page) -> None:
    csrf = await page.log_in(Role.RESPONDER)
    listing = (await page.http.get("/ui/")).text
    assert "inc-1" in listing
    assert "/ui/approvals/act-1/approve" in listing
    acked = await page.post("/ui/incidents/inc-1/ack", {"csrf": csrf})
    assert (acked.status_code, acked.headers["location"]) == (303, "/ui/incidents/inc-1?flash=acknowledged")
    assert await page.state() == "acknowledged"
    approved = await page.post("/ui/approvals/act-1/approve", {"csrf": csrf})
    assert approved.headers["location"] == "/ui/incidents/inc-1?flash=approved"
    detail = (await page.http.get("/api/v1/incidents/inc-1", headers=bearer(Role.VIEWER))).json()
    assert [a["status"] for a in detail["actions"]] == ["dry-run"]
    assert detail["timeline"][-1]["kind"] == "step approved"
    again = await page.post("/ui/approvals/act-1/approve", {"csrf": csrf})
    assert again.headers["location"] == "/ui/incidents/inc-1?flash=conflict"


async def test_viewers_see_no_buttons_and_cannot_decide(page: Page) -> None:
    csrf = await page.log_in(Role.VIEWER)
    detail = (await page.http.get("/ui/incidents/inc-1")).text
    assert "/ui/incidents/inc-1/ack" not in detail
    refused = await page.post("/ui/incidents/inc-1/ack", {"csrf": csrf})
    assert refused.headers["location"] == "/ui/incidents/inc-1?flash=viewer"
    assert await page.state() == "open"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
        # Same site, other origin: another port of the same host, which SameSite=Strict does not tell apart.
        {"Origin": "http://oncall.test:3000", "Sec-Fetch-Site": "same-site"},
        {"Origin": "http://oncall.test:3000"},
        {"Origin": "null"},
        {},
    ],
    ids=["cross-site", "same-site-other-port", "origin-only", "opaque-origin", "neither-header"],
)
async def test_cross_origin_posts_with_a_valid_session_are_refused(page: Page, headers: dict[str, str]) -> None:
    csrf = await page.log_in(Role.RESPONDER)
    for path in ("/ui/incidents/inc-1/ack", "/ui/incidents/inc-1/resolve", "/ui/approvals/act-1/approve"):
        response = await page.post(path, {"csrf": csrf}, headers=headers)
        assert response.status_code == 403, path
    assert await page.state() == "open"
    pending = (await page.http.get("/api/v1/approvals", headers=bearer(Role.VIEWER))).json()
    assert [p["id"] for p in pending] == ["act-1"]
    logout = await page.post("/ui/logout", {"csrf": csrf}, headers=headers)
    assert logout.status_code == 403
    assert (await page.http.get("/ui/")).status_code == 200  # still logged in
    login = await page.post("/ui/login", {"token": SECRETS[Role.ADMIN]}, headers=headers)
    assert login.status_code == 403


@pytest.mark.parametrize("data", [{"other": "x"}, {"csrf": ""}, {"csrf": "not-the-session-token"}])
async def test_a_post_without_the_session_form_token_is_refused(page: Page, data: dict[str, str]) -> None:
    await page.log_in(Role.RESPONDER)
    response = await page.post("/ui/incidents/inc-1/ack", data)
    assert response.status_code == 403
    assert await page.state() == "open"


async def test_an_older_sessions_form_token_does_not_fit_a_new_session(page: Page) -> None:
    old = await page.log_in(Role.RESPONDER)
    new = await page.log_in(Role.RESPONDER)
    assert old != new
    assert (await page.post("/ui/incidents/inc-1/ack", {"csrf": old})).status_code == 403


async def test_an_expired_session_is_refused(page: Page) -> None:
    csrf = await page.log_in(Role.RESPONDER)
    page.clock.advance(LIFETIME_S - 1)
    assert (await page.http.get("/ui/")).status_code == 200
    page.clock.advance(1)
    assert (await page.http.get("/ui/")).headers["location"] == "/ui/login"
    response = await page.post("/ui/incidents/inc-1/ack", {"csrf": csrf})
    assert (response.status_code, response.headers["location"]) == (303, "/ui/login")
    assert await page.state() == "open"


@pytest.mark.parametrize(
    "cookie",
    [
        SECRETS[Role.RESPONDER],  # the raw token, as the cookie used to hold it
        "x" * 5000,
        "e30.bm90LWEtc2lnbmF0dXJl",
    ],
    ids=["raw-token", "huge", "unsigned"],
)
async def test_a_cookie_that_is_not_a_signed_session_is_refused(page: Page, cookie: str) -> None:
    page.http.cookies.set(COOKIE, cookie, domain="oncall.test", path="/ui")
    assert (await page.http.get("/ui/")).headers["location"] == "/ui/login"


async def test_a_tampered_session_is_refused(page: Page) -> None:
    await page.log_in(Role.VIEWER)
    signed = page.http.cookies[COOKIE]
    payload, _, signature = signed.rpartition(".")
    # Another key, and a payload changed under the old signature: neither is accepted.
    forged, _ = PageSessions(key="another-key" * 4, lifetime_s=LIFETIME_S, clock=page.clock).issue(
        next(t for t in BOOK if t.role is Role.ADMIN)
    )
    for cookie in (forged, f"{payload}x.{signature}", f"{payload}.{signature[::-1]}"):
        page.http.cookies.set(COOKIE, cookie, domain="oncall.test", path="/ui")
        assert (await page.http.get("/ui/")).status_code == 303


def test_a_session_ends_when_its_token_is_removed_or_changed() -> None:
    sessions = PageSessions(key="k" * 32, lifetime_s=LIFETIME_S, clock=FakeClock(0.0))
    responder = next(t for t in BOOK if t.role is Role.RESPONDER)
    cookie, issued = sessions.issue(responder)
    assert sessions.read(cookie, BOOK) == issued
    others = TokenBook(t for t in BOOK if t is not responder)
    assert sessions.read(cookie, others) is None
    rotated = others.with_token(type(responder)(responder.name, responder.role, hash_secret("a new secret")))
    assert sessions.read(cookie, rotated) is None


def test_replicas_with_the_same_key_share_sessions_and_others_do_not() -> None:
    clock = FakeClock(0.0)
    first, second = (PageSessions(key="shared-key" * 4, lifetime_s=LIFETIME_S, clock=clock) for _ in range(2))
    cookie, issued = first.issue(next(iter(BOOK)))
    assert second.read(cookie, BOOK) == issued
    assert PageSessions.with_random_key(lifetime_s=LIFETIME_S, clock=clock).read(cookie, BOOK) is None


async def test_logout_is_a_post_with_the_form_token(page: Page) -> None:
    csrf = await page.log_in(Role.RESPONDER)
    assert (await page.http.get("/ui/logout")).status_code == 405
    assert (await page.http.get("/ui/")).status_code == 200  # a link or an image cannot log anyone out
    assert (await page.post("/ui/logout", {"csrf": "not-the-session-token"})).status_code == 403
    response = await page.post("/ui/logout", {"csrf": csrf})
    assert (response.status_code, response.headers["location"]) == (303, "/ui/login?flash=logged-out")
    assert _set_cookie(response)[COOKIE]["max-age"] == "0"
    assert (await page.http.get("/ui/")).headers["location"] == "/ui/login"


@pytest.mark.parametrize(
    "path", ["/ui/login", "/ui/", "/ui/incidents/inc-1", "/ui/incidents/nope", "/ui/incidents/bad%20id", "/ui/x"]
)
async def test_every_page_response_forbids_framing_and_caching(page: Page, path: str) -> None:
    await page.log_in(Role.VIEWER)
    headers = (await page.http.get(path)).headers
    assert headers["cache-control"] == "no-store"
    assert headers["x-frame-options"] == "DENY"
    policy = {part.strip().partition(" ")[0]: part.strip() for part in headers["content-security-policy"].split(";")}
    assert policy["frame-ancestors"] == "frame-ancestors 'none'"
    assert policy["form-action"] == "form-action 'self'"
    assert "script-src" not in policy  # default-src 'none': no script runs on the page
    assert policy["default-src"] == "default-src 'none'"
    assert headers["x-content-type-options"] == "nosniff"


async def test_the_stylesheet_is_served_from_the_page_itself(page: Page) -> None:
    login = (await page.http.get("/ui/login")).text
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)"', login) == ["/ui/page.css"]
    assert "<style" not in login  # the policy allows no inline styles
    css = await page.http.get("/ui/page.css")
    assert (css.status_code, css.headers["content-type"].split(";")[0]) == (200, "text/css")


@pytest.mark.parametrize("code", sorted(FLASHES))
async def test_known_flash_codes_show_their_fixed_sentence(page: Page, code: str) -> None:
    await page.log_in(Role.VIEWER)
    response = await page.http.get("/ui/", params={"flash": code})
    assert _flash(response) == code
    assert FLASHES[code] in response.text


@pytest.mark.parametrize(
    "flash", ["<script>alert(1)</script>", "Your session expired, log in at https://evil.example", "", "ACKNOWLEDGED"]
)
async def test_any_other_flash_shows_nothing(page: Page, flash: str) -> None:
    await page.log_in(Role.VIEWER)
    response = await page.http.get("/ui/incidents/inc-1", params={"flash": flash})
    assert _flash(response) is None
    assert 'class="flash"' not in response.text
    if flash:
        assert flash not in response.text


async def test_html_in_data_is_escaped(page: Page) -> None:
    script = "<script>alert(1)</script>"
    opened = replace(incident(series=SeriesKey.of("latency", {"model": script}), id="inc-2"), title=script)
    await page.store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, 100.0, anomaly(100.0)))
    await page.log_in(Role.VIEWER)
    for path in ("/ui/", "/ui/incidents/inc-2"):
        text = (await page.http.get(path)).text
        assert script not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"csrf=" + b"x" * 5000, FORM),
        (b"&".join(b"f%d=1" % i for i in range(50)), FORM),
        (b"csrf=\xff\xfe", FORM),
        (b'{"csrf": "x"}', {"Content-Type": "application/json"}),
        (
            b"--b\r\nContent-Disposition: form-data; name=csrf\r\n\r\nx\r\n--b--\r\n",
            {"Content-Type": "multipart/form-data; boundary=b"},
        ),
        (b"", {}),
    ],
    ids=["too-big", "too-many-fields", "not-utf8", "json", "multipart", "empty"],
)
async def test_a_body_that_is_not_one_of_the_pages_forms_is_a_client_error(
    page: Page, content: bytes, headers: dict[str, str]
) -> None:
    await page.log_in(Role.RESPONDER)
    for path in ("/ui/incidents/inc-1/ack", "/ui/login", "/ui/logout"):
        response = await page.http.post(path, content=content, headers=SAME_ORIGIN | headers)
        assert response.status_code == 400, path
    assert await page.state() == "open"


async def test_api_clients_with_a_bearer_token_need_no_origin_or_form_token(page: Page) -> None:
    decided = await page.http.post(
        "/api/v1/approvals/act-1/reject", json={"comment": "not today"}, headers=bearer(Role.RESPONDER)
    )
    assert decided.json()["status"] == "rejected"
    timeline = (await page.http.get("/api/v1/incidents/inc-1", headers=bearer(Role.VIEWER))).json()["timeline"]
    assert timeline[-1]["kind"] == "step rejected"
    assert timeline[-1]["detail"] == {
        "by": "test-responder",
        "comment": "create_job (feature-drift-retrain, step 1): not today",
    }


# -- the incident list: filters and pages --------------------------------------------------------------------------


async def _open(page: Page, incident_id: str, *, model: str, severity: Severity, at: float) -> None:
    series = SeriesKey.of("model_request_error_ratio", {"model": model, "namespace": "serving"})
    opened = incident(id=incident_id, series=series, severity=severity, opened_at=at)
    await page.store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, at, anomaly(at)))


def _listed(response: httpx.Response) -> list[str]:
    return re.findall(r'href="/ui/incidents/([^"]+)"', response.text.partition('id="incidents"')[2])


async def test_the_list_filters_by_state_severity_and_model(page: Page) -> None:
    await _open(page, "inc-recsys", model="recsys", severity=Severity.CRITICAL, at=200.0)
    await _open(page, "inc-fraud", model="fraud-detector", severity=Severity.CRITICAL, at=300.0)
    await page.log_in(Role.VIEWER)
    assert _listed(await page.http.get("/ui/")) == ["inc-fraud", "inc-recsys", "inc-1"]
    assert _listed(await page.http.get("/ui/", params={"severity": "critical"})) == ["inc-fraud", "inc-recsys"]
    assert _listed(await page.http.get("/ui/", params={"model": "fraud-detector"})) == ["inc-fraud", "inc-1"]
    both = await page.http.get("/ui/", params={"model": "fraud-detector", "severity": "warning", "state": "open"})
    assert _listed(both) == ["inc-1"]
    # The form shows what was chosen, and each model links to its own list with the other filters kept.
    assert '<option value="warning" selected>' in both.text
    assert '<option value="open" selected>' in both.text
    assert 'value="fraud-detector"' in both.text
    assert 'href="/ui/?state=open&amp;severity=warning&amp;model=fraud-detector"' in both.text
    none = await page.http.get("/ui/", params={"state": "resolved"})
    assert _listed(none) == []
    assert "No incidents match these filters." in none.text


async def test_the_list_pages_with_links_that_keep_the_filters(page: Page) -> None:
    for i in range(PAGE_SIZE + 5):
        await _open(page, f"inc-r{i:03d}", model="recsys", severity=Severity.WARNING, at=1000.0 + i)
    await page.log_in(Role.VIEWER)
    first = await page.http.get("/ui/", params={"model": "recsys"})
    assert len(_listed(first)) == PAGE_SIZE
    [link] = re.findall(r'id="next-page" href="([^"]+)"', first.text)
    link = link.replace("&amp;", "&")
    assert link.startswith("/ui/?model=recsys&cursor=")
    second = await page.http.get(link)
    assert _listed(second) == [f"inc-r{i:03d}" for i in range(4, -1, -1)]
    assert 'id="next-page"' not in second.text
    assert 'id="first-page" href="/ui/?model=recsys"' in second.text


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"state": "closed"}, "Unknown state: choose open, acknowledged, resolved."),
        ({"severity": "urgent"}, "Unknown severity: choose critical, warning, info."),
        ({"model": "m" * 201}, "A model name is at most 200 characters long."),
        ({"cursor": "not-a-cursor"}, "That page link is not one this list made"),
        ({"cursor": "x" * 5000}, "That page link is not one this list made"),
        ({"state": "<script>alert(1)</script>"}, "Unknown state: choose open, acknowledged, resolved."),
        ({"severity": "Your session expired, log in at https://evil.example"}, "Unknown severity"),
    ],
)
async def test_a_filter_value_the_list_does_not_know_is_a_clear_message(
    page: Page, params: dict[str, str], problem: str
) -> None:
    await page.log_in(Role.VIEWER)
    response = await page.http.get("/ui/", params=params)
    assert response.status_code == 400
    assert problem in response.text
    # The message is fixed: what the link put in the query is not repeated (the model field keeps a valid one).
    for value in params.values():
        assert value not in response.text
    assert 'id="incidents"' not in response.text
    assert 'id="clear-filters" href="/ui/"' in response.text


# -- one incident: its signals drawn and ranked, its timeline in words ---------------------------------------------

REQUESTS = SeriesKey.of("model_requests_per_second", {"model": "fraud-detector", "namespace": "serving"})


async def _incident_with_signals(page: Page, *, samples: bool = True) -> None:
    t0 = 1_772_571_600.0
    signals = (
        Signal(LATENCY, t0 + 60, t0 + 240, t0 + 120, 0.9, 0.98, 3, Severity.WARNING, quiet_at=t0 + 900),
        Signal(REQUESTS, t0, t0 + 300, t0 + 60, 410.0, 0.74, 4, Severity.WARNING),
    )
    opened = replace(
        incident(id="inc-s", series=REQUESTS, opened_at=t0), fingerprint="group:fraud", signals=signals[1:]
    )
    await page.store.apply_change(
        IncidentChange(
            IncidentChangeKind.OPENED, opened, t0, Anomaly(REQUESTS, t0, 230.0, 0.72, "default", Severity.WARNING)
        )
    )
    joined = replace(opened, signals=signals, signal_count=2)
    await page.store.apply_change(
        IncidentChange(
            IncidentChangeKind.JOINED,
            joined,
            t0 + 60,
            Anomaly(LATENCY, t0 + 60, 0.27, 0.98, "default", Severity.WARNING),
        )
    )
    if samples:
        await page.store.add_signal_points(
            [("inc-s", str(series), t0 - 1800 + i * 60, 0.1 * i) for series in (LATENCY, REQUESTS) for i in range(60)]
        )
    await page.store.annotate_incident("inc-s", kind="commented", by="alice", comment="<b>looking</b>", at=t0 + 120)


async def test_the_incident_page_draws_each_signal_ranked_by_probable_cause(page: Page) -> None:
    await _incident_with_signals(page)
    await page.log_in(Role.VIEWER)
    text = (await page.http.get("/ui/incidents/inc-s")).text
    sections = re.findall(
        r'<section class="signal[^"]*" id="signal-(\d)" data-rank="\d">\s*<h3><span class="rank">#\d</span> (\w+)', text
    )
    assert sections == [("1", "model_requests_per_second"), ("2", "model_request_latency_p99_seconds")]
    assert text.count('<svg class="chart"') == 2
    assert text.count('<polyline class="values"') == 2
    assert "probable cause" in text
    assert "kind: <strong>traffic</strong>" in text
    assert "traffic is a known cause of latency" in text
    timeline = text.partition('id="timeline"')[2]
    assert "model_requests_per_second opened the incident (value 230, score 0.720, severity warning)" in timeline
    assert "model_request_latency_p99_seconds joined (value 0.27, score 0.980)" in timeline
    assert "alice commented: “&lt;b&gt;looking&lt;/b&gt;”" in timeline
    assert "{" not in timeline.partition("</ul>")[0]


async def test_without_samples_the_page_says_so_and_draws_the_recorded_values(page: Page) -> None:
    await _incident_with_signals(page, samples=False)
    await page.log_in(Role.VIEWER)
    text = (await page.http.get("/ui/incidents/inc-s")).text
    assert "No samples were kept for this incident" in text
    assert text.count('<circle class="known"') == 2
    assert '<polyline class="values"' not in text


async def test_an_incident_without_signal_details_still_shows_its_timeline(page: Page) -> None:
    await page.log_in(Role.VIEWER)
    text = (await page.http.get("/ui/incidents/inc-1")).text
    assert "This incident holds no details of its signals." in text
    assert "model_request_latency_p99_seconds opened the incident" in text
    assert "playbook feature-drift-retrain asked for step 1, create_job (dry-run)" in text


async def test_an_incident_with_many_signals_draws_only_its_most_probable_causes(page: Page) -> None:
    t0 = 1_772_571_600.0
    signals = tuple(
        Signal(
            SeriesKey.of(f"queue_depth_{i}", {"model": "fraud"}), t0 + i, t0 + i, t0 + i, 1.0, 0.9, 1, Severity.WARNING
        )
        for i in range(MAX_PICTURES + 3)
    )
    opened = replace(incident(id="inc-many", series=signals[0].series, opened_at=t0), signals=signals)
    await page.store.apply_change(IncidentChange(IncidentChangeKind.OPENED, opened, t0, anomaly(t0)))
    await page.log_in(Role.VIEWER)
    text = (await page.http.get("/ui/incidents/inc-many")).text
    assert text.count('<section class="signal') == MAX_PICTURES + 3
    assert text.count('<svg class="chart"') == MAX_PICTURES
    assert text.count(f"Not drawn: the page draws the {MAX_PICTURES} most probable causes.") == 3
