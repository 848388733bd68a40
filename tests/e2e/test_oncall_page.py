"""On-call in a real browser: headless Chromium (the system's, driven by Playwright) against a real `aiops run`.

Log in, acknowledge an incident opened by the replayed scenario, approve the step that waits for a person, see
the results and log out; filter the incident list and read an incident's ranked, drawn signals and its timeline; a
page on another port cannot post the forms; the API docs need no Internet access. Screenshots are kept as
artefacts (AIOPS_ARTEFACTS_DIR, default .artefacts/): oncall-page.png, oncall-list.png, oncall-incident.png.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Route, expect, sync_playwright

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import SECRETS, bearer
from tests.support.engine_process import free_port, running_engine

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTEFACTS = Path(os.environ.get("AIOPS_ARTEFACTS_DIR", REPO / ".artefacts"))
BROWSER_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Incidents stay open after the replay (no auto-resolution), so there is one for on-call to acknowledge.
    with running_engine(tmp_path_factory.mktemp("engine"), AIOPS_INCIDENT_RESOLVE_AFTER_S="1e9") as base:
        yield base


def test_log_in_acknowledge_and_approve_in_a_real_browser(engine: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{engine}/ui/")
        expect(page).to_have_url(f"{engine}/ui/login")
        page.fill("input[name=token]", SECRETS[Role.RESPONDER])
        page.click("button[type=submit]")
        expect(page.locator("#incidents")).to_contain_text("model_request_latency_p99_seconds")

        # Acknowledge the latency incident opened by the replayed spike.
        page.click("#incidents a:has-text('model_request_latency_p99_seconds')")
        page.click("button:has-text('Acknowledge')")
        expect(page.locator(".flash")).to_have_attribute("data-flash", "acknowledged")
        expect(page.locator("#state")).to_have_text("acknowledged")

        # Approve the retraining step that waits for a person.
        page.goto(f"{engine}/ui/")
        page.click("#approvals button:has-text('Approve')")
        expect(page.locator(".flash")).to_have_attribute("data-flash", "approved")
        expect(page.locator("#actions")).to_contain_text("dry-run")
        expect(page.locator("#actions")).to_contain_text("test-responder")
        page.screenshot(path=str(ARTEFACTS / "oncall-page.png"), full_page=True)

        page.click("#logout")
        expect(page).to_have_url(f"{engine}/ui/login?flash=logged-out")
        page.goto(f"{engine}/ui/")
        expect(page).to_have_url(f"{engine}/ui/login")
        browser.close()

    approvals = httpx.get(f"{engine}/api/v1/approvals", headers=bearer(Role.VIEWER), timeout=5).json()
    assert approvals == []


def test_filter_the_list_and_read_an_incident_with_several_signals_in_a_real_browser(engine: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{engine}/ui/login")
        page.fill("input[name=token]", SECRETS[Role.VIEWER])
        page.click("button[type=submit]")

        # Filter by state, then follow a model's link: the state filter stays.
        page.select_option("select[name=state]", "open")
        page.click("#filters button[type=submit]")
        # An empty field of the form is no filter.
        expect(page).to_have_url(f"{engine}/ui/?state=open&severity=&model=")
        page.click("#incidents a.model:has-text('fraud-detector')")
        expect(page).to_have_url(f"{engine}/ui/?state=open&model=fraud-detector")
        expect(page.locator("select[name=state]")).to_have_value("open")
        expect(page.locator("input[name=model]")).to_have_value("fraud-detector")
        rows = page.locator("#incidents tr.sev-warning, #incidents tr.sev-critical, #incidents tr.sev-info")
        expect(rows.first).to_be_visible()
        for model in page.locator("#incidents a.model").all_inner_texts():
            assert model == "fraud-detector"
        page.screenshot(path=str(ARTEFACTS / "oncall-list.png"), full_page=True)

        # A value the list does not know is said in words.
        page.goto(f"{engine}/ui/?severity=urgent")
        expect(page.locator("[data-problem]")).to_contain_text("Unknown severity: choose critical, warning, info.")

        # The traffic surge's incident: its signals ranked, each drawn, the timeline in sentences.
        page.goto(f"{engine}/ui/?state=open&model=fraud-detector")
        page.click("#incidents a:has-text('model_requests_per_second')")
        signals = page.locator("#causes section.signal")
        assert signals.count() >= 2
        first = signals.first
        expect(first.locator("h3")).to_contain_text("#1 model_requests_per_second")
        expect(first.locator(".badge").first).to_have_text("probable cause")
        expect(first.locator(".reasons")).to_contain_text("traffic is a known cause of latency")
        assert page.locator("#causes svg.chart").count() == signals.count()
        assert page.locator("#causes svg.chart polyline.values").count() == signals.count()
        box = first.locator("svg.chart").bounding_box()
        assert box is not None
        assert box["width"] > 800
        assert box["height"] > 120
        expect(first.locator("svg.chart .marker-incident text").first).to_contain_text("opened")
        timeline = page.locator("#timeline")
        expect(timeline).to_contain_text("model_requests_per_second opened the incident (value")
        expect(timeline).to_contain_text("joined (value")
        assert "{" not in timeline.inner_text()
        page.screenshot(path=str(ARTEFACTS / "oncall-incident.png"), full_page=True)
        browser.close()


def test_a_page_on_another_port_of_the_same_host_cannot_post_the_forms(engine: str) -> None:
    """SameSite=Strict lets the cookie through (same site: the port does not count); the origin check does not."""
    incidents = httpx.get(f"{engine}/api/v1/incidents", headers=bearer(Role.VIEWER), timeout=5).json()
    [target, before] = next([i["id"], i["state"]] for i in incidents if i["state"] != "resolved")
    attack = (
        f'<form id="f" method="post" action="{engine}/ui/incidents/{target}/resolve">'
        '<input name="csrf" value="guessed"></form><script>document.getElementById("f").submit()</script>'
    )
    with _serving(attack) as attacker, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.goto(f"{engine}/ui/login")
        page.fill("input[name=token]", SECRETS[Role.RESPONDER])
        page.click("button[type=submit]")
        expect(page.locator("#incidents")).to_be_visible()
        with page.expect_response(f"{engine}/ui/incidents/{target}/resolve") as posted:
            page.goto(attacker)
        assert posted.value.status == 403
        browser.close()
    after = httpx.get(f"{engine}/api/v1/incidents/{target}", headers=bearer(Role.VIEWER), timeout=5).json()
    assert after["state"] == before


def test_the_api_docs_work_without_internet_access(engine: str) -> None:
    host = urlsplit(engine).netloc
    elsewhere: list[str] = []

    def only_the_engine(route: Route) -> None:
        if urlsplit(route.request.url).netloc == host:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        page = browser.new_page()
        page.route("**/*", only_the_engine)
        page.goto(f"{engine}/docs")
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("aiops-engine")
        expect(page.locator(".swagger-ui")).to_contain_text("/api/v1/incidents")
        browser.close()
    assert elsewhere == []


@contextmanager
def _serving(html: str) -> Iterator[str]:
    """``html`` served on another loopback port: another origin of the same site as the engine."""
    body = html.encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        thread.join()
        server.server_close()
