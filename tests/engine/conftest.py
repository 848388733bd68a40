"""Store-backed tests (the SQL store's adapter tests, the store ports' contract suites) run against each database
the engine supports: SQLite always, PostgreSQL when AIOPS_TEST_POSTGRES_URL names a server (``make test`` starts
one)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.databases import empty_database


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return await empty_database(request.param, tmp_path)
