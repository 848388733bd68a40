"""Fuzz the whole HTTP API of a running engine from its own OpenAPI schema with schemathesis: no input, with an
admin token or with none, may produce a 5xx."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.adapters.api.auth import Role
from tests.engine.adapters.tokens import SECRETS
from tests.support.engine_process import running_engine

SCHEMATHESIS = shutil.which("schemathesis", path=str(Path(sys.executable).parent))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_engine(tmp_path_factory.mktemp("fuzz")) as base:
        yield base


@pytest.mark.parametrize(("token", "examples"), [(SECRETS[Role.ADMIN], 30), (None, 10)], ids=["admin", "anonymous"])
def test_no_input_makes_the_api_fail(engine: str, token: str | None, examples: int) -> None:
    assert SCHEMATHESIS is not None, "schemathesis is a test dependency"
    headers = ["--header", f"Authorization: Bearer {token}"] if token else []
    done = subprocess.run(
        [
            SCHEMATHESIS,
            "run",
            f"{engine}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            str(examples),
            "--generation-deterministic",
            "--request-timeout",
            "10",
            *headers,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    tested = re.search(r"Tested: (\d+)", done.stdout)
    assert tested is not None
    assert int(tested.group(1)) >= 15, "the fuzzer must reach every operation of the API"
