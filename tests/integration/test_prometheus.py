"""The engine against real Prometheus and Alertmanager servers (``make test`` starts them with
scripts/services/prometheus.sh and exports where they are).

Prometheus scrapes the exporter these tests serve, evaluates the alerting rule ``AiopsTestValueHigh``
(``aiops_test_value > 100``), remote-writes every ``aiops_test_*`` series to the engine these tests serve, and
Alertmanager posts that rule's alerts to the engine's webhook. Each test uses its own metric, so one test's
alerts and samples do not leak into another's assertions.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from engine.adapters.api.app import create_app
from engine.adapters.api.auth import hash_secret
from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.http_server import HttpServer, bind
from engine.adapters.sources.promql import PromQLSource, PromQuery
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.app.summary import RunSummary
from engine.core.actions.executor import ActionExecutor
from engine.core.alert_feed import AlertFeed
from engine.core.detection import DetectionPolicy, DetectionService
from engine.core.incidents import IncidentManager, IncidentPolicy
from engine.core.pipeline import Pipeline
from engine.core.playbooks.guards import Policy
from engine.core.playbooks.planner import Planner
from engine.core.playbooks.remediation import Remediator
from engine.core.ports import SampleSource
from engine.domain.clock import SystemClock
from engine.domain.events import ActionMode, Incident, IncidentState, MetricSample
from tests.engine.adapters.tokens import BOOK
from tests.engine.core.test_pipeline import AboveTen
from tests.support.scrape_target import ScrapeTarget

PROMETHEUS_URL = os.environ.get("AIOPS_TEST_PROMETHEUS_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        PROMETHEUS_URL is None,
        reason="AIOPS_TEST_PROMETHEUS_URL is not set (make test starts Prometheus and Alertmanager)",
    ),
]
EXPORTER_PORT = int(os.environ.get("AIOPS_TEST_EXPORTER_PORT", "0"))
ENGINE_PORT = int(os.environ.get("AIOPS_TEST_ENGINE_PORT", "0"))
TOKEN = os.environ.get("AIOPS_TEST_INGEST_TOKEN", "")
# Seen on a 2-core machine: value change to firing webhook about 4 s, resolved about 1 s. Generous for CI.
WAIT_S = 45.0
# Prometheus keeps what earlier runs in the same session stored; this run's series carry their own label.
RUN = uuid.uuid4().hex[:12]


class Exporter(ScrapeTarget):
    """A /metrics endpoint whose values the test sets; Prometheus scrapes it every second."""

    def __init__(self, port: int) -> None:
        self.values: dict[str, float] = {}
        super().__init__(port, self._render)

    def _render(self) -> bytes:
        return "".join(f"{name} {value}\n" for name, value in sorted(self.values.items())).encode()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    with Exporter(EXPORTER_PORT) as serving:
        yield serving


@dataclass
class RunningEngine:
    store: SqlStore
    summary: RunSummary
    feed: AlertFeed
    webhook: WebhookBodies

    async def incidents(self, predicate: Callable[[Incident], bool]) -> list[Incident]:
        return [incident for incident in await self.store.list_incidents() if predicate(incident)]

    async def wait_for(self, predicate: Callable[[Incident], bool], what: str) -> Incident:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while asyncio.get_running_loop().time() < deadline:
            found = await self.incidents(predicate)
            if found:
                return found[0]
            await asyncio.sleep(0.2)
        raise AssertionError(f"timed out after {WAIT_S:g}s waiting for {what}")


class WebhookBodies:
    """An ASGI wrapper keeping the exact bytes posted to the Alertmanager webhook, to deliver them again."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app
        self.received: list[bytes] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/api/v1/alerts":
            await self._app(scope, receive, send)
            return
        chunks: list[bytes] = []

        async def recording() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    self.received.append(b"".join(chunks))
            return message

        await self._app(scope, recording, send)


@contextlib.asynccontextmanager
async def running_engine(
    tmp_path: Path, source: SampleSource, sink: PushedSource | None = None
) -> AsyncIterator[RunningEngine]:
    """The pipeline with a value-above-ten detector and the HTTP API (webhook, remote_write) on ENGINE_PORT."""
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    summary, feed = RunSummary(), AlertFeed()
    pipeline = Pipeline(
        source=source,
        detection=DetectionService(DetectionPolicy(detector="above-ten"), AboveTen(8), threshold=0.5),
        incidents=IncidentManager(IncidentPolicy(min_signals=2, open_window_s=600, resolve_after_s=3600)),
        remediator=Remediator(
            Planner([], ActionMode.DRY_RUN),
            ActionExecutor(store.ledger, SystemClock(), backends={}, owner="test"),
            store.ledger,
            Policy(),
        ),
        store=store,
        observer=summary,
        alerts=feed,
    )
    app = create_app(
        store=store,
        metrics=EngineMetrics(CollectorRegistry()),
        status=dict,
        tokens=BOOK,
        ingest=IngestCredentials.parse(hash_secret(TOKEN), ""),
        alerts=feed,
        remote_write=sink,
    )
    webhook = WebhookBodies(app)
    server = HttpServer(webhook, bind("127.0.0.1", ENGINE_PORT))
    serving = asyncio.create_task(server.serve())
    running = asyncio.create_task(pipeline.run())
    try:
        yield RunningEngine(store, summary, feed, webhook)
    finally:
        running.cancel()
        server.stop()
        await asyncio.gather(running, serving, return_exceptions=True)
        await store.close()


class Idle:
    """A source with no samples: the pipeline only carries alerts."""

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        await asyncio.Event().wait()
        yield []


async def _eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while asyncio.get_running_loop().time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {WAIT_S:g}s waiting for {what}")


async def test_promql_source_reads_the_exporter_and_an_injected_anomaly_becomes_an_incident(
    exporter: Exporter, tmp_path: Path
) -> None:
    assert PROMETHEUS_URL is not None
    polled = f'aiops_test_polled{{run="{RUN}"}}'
    exporter.values[polled] = 3.0
    query = PromQuery("aiops_test_polled", polled)
    async with httpx.AsyncClient() as http:

        async def scraped() -> bool:
            reply = await http.get(f"{PROMETHEUS_URL}/api/v1/query", params={"query": query.query})
            return bool(reply.json()["data"]["result"])

        await _eventually(scraped, "Prometheus to scrape the test exporter")
    source = PromQLSource(PROMETHEUS_URL, [query], clock=SystemClock(), interval_s=0.5, backfill_s=20, step_s=1)
    async with running_engine(tmp_path, source) as engine:
        await _eventually(lambda: _true(engine.summary.samples >= 3), "backfill and polls to reach detection")
        assert engine.summary.anomalies == 0
        assert source.state == "up"
        exporter.values[polled] = 500.0
        incident = await engine.wait_for(lambda i: i.series.name == "aiops_test_polled", "an anomaly incident")
        assert incident.series.label_map["run"] == RUN
        assert incident.series.label_map["job"] == "aiops-test-exporter"
        assert incident.state is IncidentState.OPEN


async def _true(value: bool) -> bool:
    return value


async def test_a_firing_rule_opens_an_incident_via_alertmanager_and_its_resolution_resolves_it(
    exporter: Exporter, tmp_path: Path
) -> None:
    exporter.values["aiops_test_value"] = 1.0
    async with running_engine(tmp_path, Idle()) as engine:

        def is_ours(incident: Incident) -> bool:
            return incident.series.label_map.get("alertname") == "AiopsTestValueHigh"

        exporter.values["aiops_test_value"] = 250.0
        opened = await engine.wait_for(is_ours, "AiopsTestValueHigh to reach the engine")
        assert opened.series.name == "ALERTS"
        assert opened.fingerprint.startswith("alert:")
        exporter.values["aiops_test_value"] = 1.0
        resolved = await engine.wait_for(
            lambda i: is_ours(i) and i.state is IncidentState.RESOLVED, "the resolved notification"
        )
        assert resolved.id == opened.id
        assert resolved.resolved_at is not None
        assert resolved.resolved_at >= opened.opened_at
        detail = await engine.store.get_incident(resolved.id)
        assert [entry.kind for entry in detail.timeline] == ["opened", "resolved"]

        # Alertmanager delivers at least once: its exact firing notification, delivered again (twice), is a no-op.
        # Replay exactly what Alertmanager sent, byte for byte.
        bodies = [body for body in engine.webhook.received if json.loads(body)["status"] == "firing"]
        assert bodies
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ENGINE_PORT}") as http:
            for _ in range(2):
                reply = await http.post(
                    "/api/v1/alerts", content=bodies[0], headers={"Authorization": f"Bearer {TOKEN}"}
                )
                assert reply.json() == {"accepted": 0, "duplicate": True}
        assert len(await engine.incidents(is_ours)) == 1
        assert (await engine.incidents(is_ours))[0].state is IncidentState.RESOLVED


async def test_remote_write_from_prometheus_reaches_the_detectors(exporter: Exporter, tmp_path: Path) -> None:
    written = f'aiops_test_written{{run="{RUN}"}}'
    exporter.values[written] = 2.0
    sink = PushedSource()
    async with running_engine(tmp_path, sink, sink) as engine:
        await _eventually(lambda: _true(engine.summary.samples > 0), "remote_write samples to reach detection")
        exporter.values[written] = 900.0
        incident = await engine.wait_for(lambda i: i.series.name == "aiops_test_written", "a remote_write incident")
        assert incident.series.label_map["run"] == RUN
        assert incident.series.label_map["job"] == "aiops-test-exporter"
        assert incident.peak_score == 1.0
