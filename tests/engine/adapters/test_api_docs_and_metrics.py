"""The API's own pages: /metrics answers at once, and /docs works on a machine without Internet access."""

import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from tests.engine.adapters.tokens import BOOK


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'api.db'}")
    metrics = EngineMetrics(CollectorRegistry())
    metrics.samples.inc(42)
    app = create_app(store=store, metrics=metrics, status=dict, tokens=BOOK)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield http
    await store.close()


@pytest.mark.parametrize("path", ["/metrics", "/metrics/"])
async def test_metrics_answer_without_a_redirect(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "aiops_samples_total 42.0" in response.text


async def test_metrics_take_only_reads(client: httpx.AsyncClient) -> None:
    assert (await client.post("/metrics")).status_code == 405


async def test_docs_load_every_asset_from_the_engine_itself(client: httpx.AsyncClient) -> None:
    script = "/docs/assets/swagger-ui-bundle.js"
    page = await client.get("/docs")
    assert page.status_code == 200
    urls = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    urls += re.findall(r"url: '([^']+)'", page.text)
    assert script in urls
    assert "/openapi.json" in urls
    # Nothing from another host: the page must work where the engine cannot reach the Internet.
    assert [url for url in urls if urlsplit(url).netloc] == []
    assert re.findall(r"https?://", page.text) == []
    for url in urls:
        assert (await client.get(url)).status_code == 200, url
    bundle = await client.get(script)
    assert bundle.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript")
    assert len(bundle.content) > 100_000  # the real bundle, not a stub


async def test_swagger_ui_sends_the_description_to_no_validator(client: httpx.AsyncClient) -> None:
    assert '"validatorUrl": null' in (await client.get("/docs")).text


async def test_the_docs_describe_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert "/api/v1/incidents" in schema["paths"]
    assert not {"/docs", "/metrics"} & set(schema["paths"])


async def test_no_docs_page_fetches_from_the_internet(client: httpx.AsyncClient) -> None:
    # ReDoc loads its logo from its vendor's CDN whatever it is given: its page is not served.
    assert (await client.get("/redoc")).status_code == 404
