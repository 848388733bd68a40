"""The container images the image tests run, each built once a test run (see ``tests/deploy/containers.py``)."""

from __future__ import annotations

import pytest

from tests.deploy import containers


@pytest.fixture(scope="session")
def engine_image() -> str:
    return containers.build("engine")


@pytest.fixture(scope="session")
def model_server_image() -> str:
    return containers.build("model-server")
