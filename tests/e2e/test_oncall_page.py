"""On-call in a real browser: headless Chromium (the system's, driven by Playwright) against a real `aiops run`.

Log in, acknowledge an incident opened by the replayed scenario, approve the step that waits for a person, and
see the results. A screenshot is kept as an artefact (AIOPS_ARTEFACTS_DIR, default .artefacts/).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect, sync_playwright

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import SECRETS, bearer
from tests.support.engine_process import running_engine

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTEFACTS = Path(os.environ.get("AIOPS_ARTEFACTS_DIR", REPO / ".artefacts"))

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system Chromium (scripts/test.sh installs it)")


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # Incidents stay open after the replay (no auto-resolution), so there is one for on-call to acknowledge.
    with running_engine(tmp_path_factory.mktemp("engine"), AIOPS_INCIDENT_RESOLVE_AFTER_S="1e9") as base:
        yield base


def test_log_in_acknowledge_and_approve_in_a_real_browser(engine: str) -> None:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{engine}/ui/")
        expect(page).to_have_url(f"{engine}/ui/login")
        page.fill("input[name=token]", SECRETS[Role.RESPONDER])
        page.click("button[type=submit]")
        expect(page.locator("#incidents")).to_contain_text("model_request_latency_p99_seconds")

        # Acknowledge the latency incident opened by the replayed spike.
        page.click("#incidents a:has-text('model_request_latency_p99_seconds')")
        page.click("button:has-text('Acknowledge')")
        expect(page.locator(".flash")).to_contain_text("Acknowledged by test-responder.")
        expect(page.locator("#state")).to_have_text("acknowledged")

        # Approve the retraining step that waits for a person.
        page.goto(f"{engine}/ui/")
        page.click("#approvals button:has-text('Approve')")
        expect(page.locator(".flash")).to_contain_text("create_job: dry-run")
        expect(page.locator("#actions")).to_contain_text("test-responder")
        page.screenshot(path=str(ARTEFACTS / "oncall-page.png"), full_page=True)
        browser.close()

    approvals = httpx.get(f"{engine}/api/v1/approvals", headers=bearer(Role.VIEWER), timeout=5).json()
    assert approvals == []
