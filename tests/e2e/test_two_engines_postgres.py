"""Two real engine processes on one PostgreSQL store: on-call decisions that reach both at the same moment are
decided once. Of two acknowledgements of the same incident, and of two approvals of the same waiting step, exactly
one wins; the other gets a clear 409."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import bearer
from tests.support.engine_process import running_engine

POSTGRES_URL = os.environ.get("AIOPS_TEST_POSTGRES_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(POSTGRES_URL is None, reason="AIOPS_TEST_POSTGRES_URL is not set (make test starts PostgreSQL)"),
]


@pytest.fixture
async def empty_postgres() -> str:
    assert POSTGRES_URL is not None
    engine = create_async_engine(POSTGRES_URL)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    return POSTGRES_URL


def _quiet_scenario(directory: Path) -> Path:
    """One flat series: the second engine serves the same store without opening incidents of its own."""
    directory.mkdir()
    rows = "\n".join(f"2026-03-02T00:{minute:02d}:00Z,1.0" for minute in range(30))
    (directory / "flat.csv").write_text("timestamp,value\n" + rows + "\n")
    (directory / "scenario.yaml").write_text(
        "name: quiet\ndescription: nothing happens\nstep_s: 60\n"
        "series:\n  - {file: flat.csv, name: quiet_metric, labels: {service: idle}}\nepisodes: []\n"
    )
    return directory


@pytest.fixture
def two_engines(empty_postgres: str, tmp_path: Path) -> Iterator[tuple[str, str]]:
    settings = {"AIOPS_DATABASE_URL": empty_postgres, "AIOPS_INCIDENT_RESOLVE_AFTER_S": "1e9"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_engine(tmp_path / "a", **settings) as first:
        quiet = str(_quiet_scenario(tmp_path / "quiet"))
        with running_engine(tmp_path / "b", AIOPS_SCENARIO_DIR=quiet, **settings) as second:
            yield first, second


async def _both(urls: tuple[str, str], path: str, body: dict[str, str]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=10, headers=bearer(Role.RESPONDER)) as http:
        return list(await asyncio.gather(*(http.post(f"{url}{path}", json=body) for url in urls)))


async def test_two_engines_decide_each_acknowledgement_and_approval_once(two_engines: tuple[str, str]) -> None:
    first, second = two_engines
    async with httpx.AsyncClient(timeout=10, headers=bearer(Role.VIEWER)) as http:
        incidents = (await http.get(f"{second}/api/v1/incidents", params={"state": "open"})).json()
        waiting = (await http.get(f"{second}/api/v1/approvals")).json()
    assert incidents, "the second engine sees the incidents the first one stored"
    assert waiting, "a step waits for approval"

    acks = await _both(two_engines, f"/api/v1/incidents/{incidents[0]['id']}/ack", {"comment": "mine"})
    assert sorted(r.status_code for r in acks) == [200, 409], [r.text for r in acks]
    [lost] = [r for r in acks if r.status_code == 409]
    assert "acknowledged" in lost.json()["detail"]

    approvals = await _both(two_engines, f"/api/v1/approvals/{waiting[0]['id']}/approve", {"comment": "go"})
    assert sorted(r.status_code for r in approvals) == [200, 409], [r.text for r in approvals]
    [lost] = [r for r in approvals if r.status_code == 409]
    assert "not waiting for approval" in lost.json()["detail"]

    async with httpx.AsyncClient(timeout=10, headers=bearer(Role.VIEWER)) as http:
        detail = (await http.get(f"{first}/api/v1/incidents/{incidents[0]['id']}")).json()
    assert [e["kind"] for e in detail["timeline"]].count("acknowledged") == 1
