"""Every panel query of the shipped dashboards against the real Prometheus scraping a running engine and a running
model server (``make test`` starts Prometheus, Kafka and MLflow; scripts/services/prometheus.sh scrapes
AIOPS_TEST_ENGINE_PORT and AIOPS_TEST_EXPORTER_PORT every second).

The engine is ``aiops serve`` as an operator runs it: consuming this run's Kafka topic, live mode, a fresh SQLite
database, webhook credentials, and playbooks that give every kind of action outcome (dry-run rollback, succeeded
notification, failed restart, a refused step, a step waiting for approval). The model server is
``python -m serving.model_server`` serving a model registered in the real MLflow that answers numbers to some rows
and generative answers (tokens, safety flags) to others. The test drives traffic the way production would
(samples and a malformed record on Kafka, an Alertmanager notification, a rejected credential, a playbook reload,
an on-call acknowledgement, predictions), keeps samples and predictions flowing, and then runs each panel's query
with Grafana's variables replaced as Grafana would for a dashboard showing the time since the processes started
(so nothing an earlier test left in Prometheus counts). Each query must return a series with a finite value.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiokafka import AIOKafkaProducer
from prometheus_client import CollectorRegistry

from engine.adapters.api.auth import Role, hash_secret
from engine.adapters.kafka.schema import encode_samples, series_key_bytes
from engine.domain.events import SeriesKey
from serving.gpu import register_gpu_metrics
from tests.dashboards.panels import panel_queries
from tests.engine.adapters.tokens import SPEC, bearer
from tests.support.engine_process import free_port
from tests.support.kafka_records import produce
from tests.support.waiting import eventually

PROMETHEUS_URL = os.environ.get("AIOPS_TEST_PROMETHEUS_URL")
KAFKA = os.environ.get("AIOPS_TEST_KAFKA_BOOTSTRAP")
MLFLOW_URL = os.environ.get("AIOPS_TEST_MLFLOW_URL")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        None in (PROMETHEUS_URL, KAFKA, MLFLOW_URL),
        reason="AIOPS_TEST_PROMETHEUS_URL, AIOPS_TEST_KAFKA_BOOTSTRAP and AIOPS_TEST_MLFLOW_URL are needed "
        "(make test starts Prometheus, Kafka and MLflow)",
    ),
]
ENGINE_PORT = int(os.environ.get("AIOPS_TEST_ENGINE_PORT", "0"))
MODEL_SERVER_PORT = int(os.environ.get("AIOPS_TEST_EXPORTER_PORT", "0"))
TOKEN = os.environ.get("AIOPS_TEST_INGEST_TOKEN", "")
REPO = Path(__file__).resolve().parents[2]
MODEL_CODE = Path(__file__).with_name("mlflow_mixed_model.py")
ENGINE = f"http://127.0.0.1:{ENGINE_PORT}"
MODEL_SERVER = f"http://127.0.0.1:{MODEL_SERVER_PORT}"
# The test Prometheus scrapes every second: what Grafana's datasource would be told (jsonData.timeInterval).
SCRAPE_S = 1
EVENT_STEP_S = 10.0
RESOLVE_AFTER_S = 60.0
SPIKE = 296
SERIES = {name: SeriesKey.of("dash_latency_seconds", {"service": name}) for name in ("checkout", "search")}
GPU_METRIC = "model_server_gpu_"


def grafana_variables(start: float, end: float, max_data_points: int = 1000) -> dict[str, str]:
    """Grafana's interval variables for a dashboard showing ``start``..``end`` on a datasource scraped every
    ``SCRAPE_S``: $__interval is the range over the data points, never below the scrape interval;
    $__rate_interval is max($__interval + scrape interval, 4 x scrape interval); $__range is the range."""
    range_s = int(end - start)  # rounded down: the window never reaches back before ``start``
    interval_s = max(SCRAPE_S, math.ceil(range_s / max_data_points))
    rate_s = max(interval_s + SCRAPE_S, 4 * SCRAPE_S)
    return {"$__rate_interval": f"{rate_s}s", "$__interval": f"{interval_s}s", "$__range": f"{range_s}s"}


def concrete(expr: str, variables: dict[str, str]) -> str:
    for variable, value in variables.items():
        expr = expr.replace(variable, value)
    assert not re.search(r"\$\w", expr), f"unreplaced variable in {expr}"
    return expr


class WebhookReceiver:
    """Where the test playbook's live notification goes: answers 200 to every POST and keeps the bodies."""

    def __init__(self) -> None:
        received: list[bytes] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                received.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _playbooks(folder: Path, webhook: str) -> Path:
    """One playbook per outcome the dashboards show, all on the test's series."""
    trigger = "triggers: [{series: dash_latency_seconds, labels: {service: checkout}}]"
    restart = "{action: rollout_restart, params: {namespace: serving, deployment: fraud}}"
    books = {
        # Dry-run: describes the rollback (the serving dashboard's rollbacks panel), calls nothing.
        "rollback": f"mode: dry-run\n{trigger}\nsteps: [{{action: mlflow_rollback_alias, params: {{model: fraud}}}}]",
        # Live: the notification succeeds; the restart fails, no cluster being configured.
        "notify-restart": f"{trigger}\nsteps:\n  - {{action: webhook_notify, params: {{url: '{webhook}', "
        f"message: 'incident {{{{ incident.id }}}}'}}}}\n  - {restart}",
        # Live: waits for a person.
        "approve": f"{trigger}\nsteps:\n  - {{action: webhook_notify, approval: required, params: "
        f"{{url: '{webhook}', message: approve me}}}}",
        # Live, but the guard refuses: the target matches no allowed pattern (a literal namespace outside the
        # allowlist would already be refused when the playbook loads).
        "refused": f"{trigger}\nguards: {{allow: {{targets: ['deployment:elsewhere/*']}}}}\nsteps: [{restart}]",
    }
    folder.mkdir()
    for name, body in books.items():
        (folder / f"dash-{name}.yaml").write_text(f"name: dash-{name}\n{body}\n")
    return folder


def _register_model(work: Path) -> str:
    """A new registered model in the real MLflow, its alias ``champion`` on version 1."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Any type hint is inferred as AnyType", category=UserWarning)
        import mlflow.pyfunc  # noqa: PLC0415 - slow to import; only this test needs it
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        client = MlflowClient(tracking_uri=MLFLOW_URL, registry_uri=MLFLOW_URL)
        run = client.create_run(client.create_experiment(f"aiops-dashboards-{uuid.uuid4().hex}"))
        mlflow.pyfunc.save_model(str(work / "model"), python_model=str(MODEL_CODE), pip_requirements=["mlflow"])
    client.log_artifacts(run.info.run_id, str(work / "model"), "model")
    client.set_terminated(run.info.run_id)
    name = f"aiops-dashboards-{uuid.uuid4().hex[:12]}"
    client.create_registered_model(name)
    client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_registered_model_alias(name, "champion", "1")
    return name


@contextlib.contextmanager
def _process(command: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as output:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"--- {log.name}\n{log.read_text()[-4000:]}")  # pytest shows it when a test failed


class Topics:
    def __init__(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.samples, self.dead_letters = f"aiops-dash-{run}.samples", f"aiops-dash-{run}.dlq"
        self.outputs = {kind: f"aiops-dash-{run}.{kind}" for kind in ("anomalies", "incidents", "actions")}


def _history(start: float) -> list[tuple[bytes | None, bytes]]:
    """300 calm points a series, both series spiking at point ``SPIKE`` (close enough to the end that their
    incidents are still open when the history has been read), as columnar messages of 50 points."""
    rng = np.random.default_rng(11)
    messages: list[tuple[bytes | None, bytes]] = []
    for key in SERIES.values():
        values = 0.1 + rng.normal(0.0, 0.005, 300)
        values[SPIKE] += 1.0
        for lo in range(0, 300, 50):
            points = [(start + i * EVENT_STEP_S, float(values[i])) for i in range(lo, lo + 50)]
            messages.append((series_key_bytes(key), encode_samples(key, points)))
    return messages


@dataclass
class Traffic:
    """Keeps samples (event time moving on, so incidents resolve) and predictions flowing until stopped."""

    topic: str
    event_time: float
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: int = 0
    error: Exception | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._flow())
        except Exception as exc:  # reported by the fixture: an exception in a thread would only be a warning
            self.error = exc

    async def _flow(self) -> None:
        rng = np.random.default_rng(5)
        producer = AIOKafkaProducer(bootstrap_servers=KAFKA, enable_idempotence=True)
        await producer.start()
        try:
            async with httpx.AsyncClient(base_url=MODEL_SERVER, timeout=5.0) as http:
                while not self.stop.is_set():
                    self.event_time += EVENT_STEP_S
                    for key in SERIES.values():
                        value = float(0.1 + rng.normal(0.0, 0.005))
                        await producer.send(
                            self.topic, encode_samples(key, [(self.event_time, value)]), series_key_bytes(key)
                        )
                    rows = [[float(x) for x in rng.normal(1.0, 0.5, 3)] for _ in range(4)] + [[-1.0, 2.0]]
                    (await http.post("/predict", json={"inputs": rows})).raise_for_status()
                    self.rounds += 1
                    await asyncio.sleep(0.2)
        finally:
            await producer.stop()


@dataclass
class Stack:
    prometheus: httpx.Client
    started: float
    gpu: bool
    # Prometheus' view of aiops_incidents{state} next to the API's, after the acknowledgement and after resolution.
    counted_after_ack: dict[str, tuple[float, int]]
    counted_after_resolution: dict[str, tuple[float, int]]


def _instant(prometheus: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = prometheus.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", f"{expr}: {body.get('error')}"
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def _scraped_counts(prometheus: httpx.Client) -> dict[str, float]:
    # Only the engine of this test: the job that scrapes ENGINE_PORT, nothing an earlier process left.
    series = _instant(prometheus, 'aiops_incidents{job="aiops-test-engine"}')
    return {s["metric"]["state"]: float(s["value"][1]) for s in series}


def _api_counts(http: httpx.Client) -> dict[str, int]:
    listed = http.get("/api/v1/incidents", params={"limit": 1000}, headers=bearer(Role.VIEWER)).json()
    return {state: sum(1 for i in listed if i["state"] == state) for state in ("open", "acknowledged", "resolved")}


def _agree(prometheus: httpx.Client, http: httpx.Client, **expected: int) -> dict[str, tuple[float, int]] | None:
    """Prometheus' last scrape and the API, by state, if they agree (and match ``expected`` where given)."""
    scraped, listed = _scraped_counts(prometheus), _api_counts(http)
    if set(scraped) != set(listed) or any(scraped[s] != listed[s] for s in listed):
        return None
    if any(listed[state] != count for state, count in expected.items()):
        return None
    return {state: (scraped[state], listed[state]) for state in listed}


def _targets_up(prometheus: httpx.Client) -> bool:
    targets = prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]
    health = {t["scrapeUrl"]: t["health"] for t in targets}
    return all(health.get(f"{base}/metrics") == "up" for base in (ENGINE, MODEL_SERVER))


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    assert PROMETHEUS_URL is not None
    with httpx.Client(base_url=PROMETHEUS_URL, timeout=10.0) as prometheus:
        yield from _running(prometheus)


def _running(prometheus: httpx.Client) -> Iterator[Stack]:
    assert KAFKA is not None
    assert MLFLOW_URL is not None
    scraped = {t["scrapeUrl"] for t in prometheus.get("/api/v1/targets").json()["data"]["activeTargets"]}
    assert f"{ENGINE}/metrics" in scraped, (
        f"the test Prometheus does not scrape {ENGINE}/metrics: "
        "restart it, or run bash scripts/services/prometheus.sh reload"
    )
    started = time.time()
    topics = Topics()
    with (
        tempfile.TemporaryDirectory(prefix="aiops-dashboards-") as folder,
        WebhookReceiver() as webhook,
        httpx.Client(base_url=ENGINE, timeout=10.0) as engine_http,
        httpx.Client(base_url=MODEL_SERVER, timeout=10.0) as model_http,
    ):
        work = Path(folder)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | {
            "AIOPS_HTTP_PORT": str(ENGINE_PORT),
            "AIOPS_DATABASE_URL": f"sqlite+aiosqlite:///{work / 'engine.db'}",
            "AIOPS_API_TOKENS": SPEC,
            "AIOPS_INGEST_BEARER_SHA256": hash_secret(TOKEN),
            "AIOPS_KAFKA_BOOTSTRAP": KAFKA,
            "AIOPS_KAFKA_TOPICS": topics.samples,
            "AIOPS_KAFKA_GROUP_ID": f"group-{topics.samples}",
            "AIOPS_KAFKA_DEAD_LETTER_TOPIC": topics.dead_letters,
            "AIOPS_KAFKA_ANOMALY_TOPIC": topics.outputs["anomalies"],
            "AIOPS_KAFKA_INCIDENT_TOPIC": topics.outputs["incidents"],
            "AIOPS_KAFKA_ACTION_TOPIC": topics.outputs["actions"],
            "AIOPS_PLAYBOOK_DIR": str(_playbooks(work / "playbooks", f"http://127.0.0.1:{webhook.port}/hook")),
            "AIOPS_MODE": "live",
            "AIOPS_INCIDENT_RESOLVE_AFTER_S": str(RESOLVE_AFTER_S),
            "AIOPS_ACTION_ATTEMPTS": "1",
            "AIOPS_ACTION_TIMEOUT_S": "5",
        }
        serve = [sys.executable, "-c", "from engine.app.cli import main; main()", "serve"]
        with _process(serve, work / "engine.log", env) as engine:
            model = _register_model(work)
            command = [sys.executable, "-m", "serving.model_server", "--model-uri", f"models:/{model}@champion"]
            command += ["--tracking-uri", MLFLOW_URL, "--port", str(MODEL_SERVER_PORT), "--reload-s", "5"]
            with _process(command, work / "model-server.log") as server:
                processes = [engine, server]
                eventually(lambda: engine_http.get("/readyz").status_code == 200, "the engine", processes=processes)
                eventually(
                    lambda: model_http.get("/healthz").status_code == 200, "the model server", processes=processes
                )
                eventually(lambda: _targets_up(prometheus), "Prometheus to scrape both processes", processes=processes)
                traffic = Traffic(topics.samples, started - 3600.0 + 300 * EVENT_STEP_S)
                flowing = threading.Thread(target=traffic.run, daemon=True)
                try:
                    yield _drive(
                        prometheus, engine_http, model_http, topics, webhook, processes, traffic, flowing, started
                    )
                finally:
                    # Panels are checked while traffic still flows: it stops once the module is done.
                    traffic.stop.set()
                    if flowing.is_alive():
                        flowing.join(timeout=10)
                    assert traffic.error is None, f"the traffic stopped: {traffic.error!r}"


def _drive(
    prometheus: httpx.Client,
    engine: httpx.Client,
    model: httpx.Client,
    topics: Topics,
    webhook: WebhookReceiver,
    processes: list[subprocess.Popen[bytes]],
    traffic: Traffic,
    flowing: threading.Thread,
    started: float,
) -> Stack:
    asyncio.run(
        produce(KAFKA, topics.samples, [*_history(traffic.event_time - 300 * EVENT_STEP_S), (None, b"not json")])
    )
    viewer, responder, admin = bearer(Role.VIEWER), bearer(Role.RESPONDER), bearer(Role.ADMIN)

    def open_incidents() -> list[dict[str, Any]]:
        listed = engine.get("/api/v1/incidents", params={"state": "open"}, headers=viewer).json()
        return [i for i in listed if i["series"].startswith("dash_latency_seconds")]

    both = eventually(
        lambda: len(found := open_incidents()) == 2 and found, "two incidents from Kafka", processes=processes
    )
    eventually(
        lambda: engine.get("/api/v1/approvals", headers=viewer).json(), "a step awaiting approval", processes=processes
    )
    eventually(lambda: webhook.received, "the live notification", processes=processes)

    ingest = {"Authorization": f"Bearer {TOKEN}"}
    assert engine.post("/api/v1/alerts", json=_notification(topics.samples), headers=ingest).is_success
    wrong = {"Authorization": "Bearer wrong"}
    assert engine.post("/api/v1/alerts", json=_notification(topics.samples), headers=wrong).status_code == 401
    assert engine.post("/api/v1/playbooks/reload", headers=admin).is_success
    for rows in ([[0.5, 1.0, 2.0]], [[-1.0, 3.0]]):
        assert model.post("/predict", json={"inputs": rows}).is_success
    assert model.post("/predict", json={"inputs": [[2e6, 1.0]]}).status_code == 500

    search = next(i for i in both if i["labels"]["service"] == "search")
    assert engine.post(f"/api/v1/incidents/{search['id']}/ack", json={"comment": "on it"}, headers=responder).is_success
    after_ack = eventually(
        lambda: _agree(prometheus, engine, acknowledged=1), "Prometheus to see the acknowledgement", processes=processes
    )

    # Event time moves on with calm samples: both incidents resolve, the acknowledged one included.
    flowing.start()
    after_resolution = eventually(
        lambda: _agree(prometheus, engine, acknowledged=0) if not open_incidents() else None,
        "both incidents resolved, in the API and in Prometheus",
        processes=processes,
    )
    # A few more scrapes with samples and predictions flowing, so that every rate has points to work on.
    eventually(lambda: traffic.rounds >= 20, "samples and predictions flowing", processes=processes)
    return Stack(prometheus, started, register_gpu_metrics(CollectorRegistry()), after_ack, after_resolution)


def _notification(run: str) -> dict[str, Any]:
    """An Alertmanager webhook notification (payload version 4) of one firing alert."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "DashboardTestAlert", "run": run, "severity": "warning"},
        "annotations": {"summary": "dashboard test"},
        "startsAt": "2026-11-26T10:00:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "fingerprint": "d45b0a4d00000001",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="DashboardTestAlert"}',
        "status": "firing",
        "receiver": "aiops",
        "groupLabels": {"alertname": "DashboardTestAlert"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


def test_incidents_by_state_in_prometheus_are_the_store_s_counts(stack: Stack) -> None:
    # After the acknowledgement: one incident acknowledged, the other open (and any alert incident).
    assert stack.counted_after_ack["acknowledged"] == (1.0, 1)
    assert stack.counted_after_ack["open"][1] >= 1
    # After resolution: nothing acknowledged any more, both test incidents resolved.
    assert stack.counted_after_resolution["acknowledged"] == (0.0, 0)
    assert stack.counted_after_resolution["resolved"][1] >= 2


@pytest.mark.parametrize(("panel", "expr"), panel_queries(), ids=[name for name, _ in panel_queries()])
def test_panel_query_returns_data_from_the_running_processes(stack: Stack, panel: str, expr: str) -> None:
    if GPU_METRIC in expr and not stack.gpu:
        pytest.skip(f"{panel}: NVML reports no GPU on this host, so the model server exports no GPU metrics")
    query = concrete(expr, grafana_variables(stack.started, time.time()))
    series = _instant(stack.prometheus, query)
    assert series, f"{panel}: {query} returned no series"
    values = [float(s["value"][1]) for s in series]
    assert any(math.isfinite(v) for v in values), f"{panel}: {query} returned only {values}"


def test_a_query_for_an_outcome_nobody_caused_returns_nothing(stack: Stack) -> None:
    # The check above could not fail if every query returned something; this one shows that it can.
    variables = grafana_variables(stack.started, time.time())
    assert _instant(
        stack.prometheus, concrete('sum(increase(aiops_actions_total{status="failed"}[$__range]))', variables)
    )
    assert (
        _instant(stack.prometheus, concrete('sum(increase(aiops_actions_total{status="undone"}[$__range]))', variables))
        == []
    )
