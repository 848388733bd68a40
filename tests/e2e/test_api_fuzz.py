"""Fuzz the whole HTTP API of a running engine from its own OpenAPI schema: no input may produce a 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import bearer
from tests.support.engine_process import running_engine


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_engine(tmp_path_factory.mktemp("fuzz")) as base:
        yield base


@pytest.fixture(scope="module")
def api_schema(engine: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{engine}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.parametrize("role", [Role.ADMIN, None], ids=["admin", "anonymous"])
def test_no_input_makes_the_api_fail(case: schemathesis.Case, role: Role | None) -> None:
    headers = bearer(role) if role is not None else {}
    case.call_and_validate(headers=headers, checks=[not_a_server_error])
