"""The Alertmanager webhook and the remote_write receiver over HTTP: authentication, validation, idempotency."""

import asyncio
import base64
import copy
import gc
import hashlib
import json
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.alert_routes import OFF_LOOP_BODY_BYTES
from engine.adapters.api.app import create_app
from engine.adapters.api.auth import hash_secret
from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.api.notification_writer import NotificationWriter
from engine.adapters.prometheus.remote_write import encode_write_request
from engine.adapters.prometheus.remote_write_types import RequestV2, SampleV2, TimeSeriesV2
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.store.sql_store import AlertNotification, SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.app.interpreter import freeze_startup_objects, shorten_thread_switches
from engine.core.alert_feed import AlertFeed
from engine.domain.errors import ConfigurationError
from engine.domain.events import Alert, AlertStatus, MetricSample, SeriesKey, Severity
from tests.engine.adapters.tokens import BOOK

TOKEN = "alertmanager-secret"
CREDENTIALS = IngestCredentials.parse(hash_secret(TOKEN), f"prom:{hash_secret('pw')}")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def notification(status: str = "firing") -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "ModelLatencyHigh", "model": "fraud", "severity": "critical"},
        "annotations": {"summary": "p99 latency of fraud is 0.9s"},
        "startsAt": "2026-11-26T10:00:00.000Z",
        "endsAt": "2026-11-26T10:05:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus/graph?g0.expr=x",
        "fingerprint": "c0ffee1234567890",
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ModelLatencyHigh"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "aiops",
        "groupLabels": {"alertname": "ModelLatencyHigh"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


class Harness:
    def __init__(self, http: httpx.AsyncClient, feed: AlertFeed, sink: PushedSource, metrics: EngineMetrics):
        self.http, self.feed, self.sink, self.metrics = http, feed, sink, metrics

    def drained_alerts(self) -> list[Sequence[Alert]]:
        return self.feed.take_waiting()

    def counter(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}")
    metrics = EngineMetrics(CollectorRegistry())
    feed, sink = AlertFeed(), PushedSource()
    app = create_app(
        store=store, metrics=metrics, status=dict, tokens=BOOK, ingest=CREDENTIALS, alerts=feed, remote_write=sink
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield Harness(http, feed, sink, metrics)
    await store.close()


async def test_a_notification_reaches_the_alert_feed_as_alerts(harness: Harness) -> None:
    reply = await harness.http.post("/api/v1/alerts", json=notification(), headers=AUTH)
    assert reply.status_code == 200
    assert reply.json() == {"accepted": 1, "duplicate": False}
    [[alert]] = harness.drained_alerts()
    assert alert.name == "ModelLatencyHigh"
    assert alert.fingerprint == "c0ffee1234567890"
    assert alert.status is AlertStatus.FIRING
    assert alert.severity is Severity.CRITICAL
    assert alert.starts_at == 1_795_687_200.0
    assert alert.ends_at is None


async def test_a_large_notification_is_taken_whole_and_a_bad_one_refused_as_a_small_one_is(harness: Harness) -> None:
    # Past the size from which a notification is decoded in a worker thread.
    large = notification()
    template = large["alerts"][0]
    large["alerts"] = [
        {**template, "labels": {**template["labels"], "pod": f"p{i}"}, "fingerprint": f"{i:016x}"} for i in range(1000)
    ]
    body = json.dumps(large).encode()
    assert len(body) > OFF_LOOP_BODY_BYTES
    reply = await harness.http.post("/api/v1/alerts", content=body, headers=AUTH | {"Content-Type": "application/json"})
    assert reply.json() == {"accepted": 1000, "duplicate": False}
    alerts = [alert for part in harness.drained_alerts() for alert in part]
    assert [alert.fingerprint for alert in alerts] == [f"{i:016x}" for i in range(1000)]
    large["alerts"][500]["startsAt"] = "not a time"
    refused = await harness.http.post(
        "/api/v1/alerts", content=json.dumps(large).encode(), headers=AUTH | {"Content-Type": "application/json"}
    )
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "alerts", 500, "startsAt"]


async def test_the_same_notification_twice_is_taken_once(harness: Harness) -> None:
    first = await harness.http.post("/api/v1/alerts", json=notification(), headers=AUTH)
    again = await harness.http.post("/api/v1/alerts", json=notification(), headers=AUTH)
    assert first.json()["duplicate"] is False
    assert again.json() == {"accepted": 0, "duplicate": True}
    assert len(harness.drained_alerts()) == 1
    assert harness.counter("aiops_alert_notifications_total", {"outcome": "duplicate"}) == 1
    resolved = await harness.http.post("/api/v1/alerts", json=notification("resolved"), headers=AUTH)
    assert resolved.json() == {"accepted": 1, "duplicate": False}
    [[alert]] = harness.drained_alerts()
    assert alert.status is AlertStatus.RESOLVED
    assert alert.ends_at == 1_795_687_500.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {base64.b64encode(b'prom:wrong').decode()}"},
        {"Authorization": "Basic %%%not-base64"},
        {"Authorization": TOKEN},
    ],
)
async def test_a_missing_or_wrong_credential_gets_401_and_is_counted(harness: Harness, headers: dict[str, str]) -> None:
    for path, body in (("/api/v1/alerts", None), ("/api/v1/write", b"")):
        reply = await harness.http.post(path, json=notification() if body is None else None, headers=headers)
        assert reply.status_code == 401
    assert harness.counter("aiops_ingest_auth_failures_total", {"endpoint": "alerts"}) == 1
    assert harness.counter("aiops_ingest_auth_failures_total", {"endpoint": "write"}) == 1
    assert harness.drained_alerts() == []


async def test_basic_auth_is_accepted(harness: Harness) -> None:
    basic = {"Authorization": f"Basic {base64.b64encode(b'prom:pw').decode()}"}
    assert (await harness.http.post("/api/v1/alerts", json=notification(), headers=basic)).status_code == 200


def _broken(change: str) -> dict[str, Any]:
    body = copy.deepcopy(notification())
    if change == "version":
        body["version"] = "3"
    elif change == "status":
        body["alerts"][0]["status"] = "pending"
    elif change == "startsAt":
        body["alerts"][0]["startsAt"] = "yesterday"
    elif change == "labels":
        body["alerts"][0]["labels"] = {"alertname": 5}
    elif change == "alerts":
        del body["alerts"]
    return body


@pytest.mark.parametrize("change", ["version", "status", "startsAt", "labels", "alerts"])
async def test_invalid_payloads_get_422(harness: Harness, change: str) -> None:
    reply = await harness.http.post("/api/v1/alerts", json=_broken(change), headers=AUTH)
    assert reply.status_code == 422
    assert harness.drained_alerts() == []


@pytest.mark.parametrize(
    ("change", "where", "message"),
    [
        ("labels", ["body", "alerts", 0, "labels"], "Expected `str`, got `int`"),
        ("startsAt", ["body", "alerts", 0, "startsAt"], "Invalid RFC3339 encoded datetime"),
        ("alerts", ["body"], "Object missing required field `alerts`"),
    ],
)
async def test_a_422_says_what_is_wrong_and_where(
    harness: Harness, change: str, where: list[object], message: str
) -> None:
    reply = await harness.http.post("/api/v1/alerts", json=_broken(change), headers=AUTH)
    assert reply.json()["detail"] == [{"loc": where, "msg": message, "type": "value_error"}]


async def test_not_json_gets_422(harness: Harness) -> None:
    reply = await harness.http.post("/api/v1/alerts", content=b"{not json", headers=AUTH)
    assert reply.status_code == 422


async def test_a_stopped_pipeline_answers_503_so_alertmanager_retries(harness: Harness) -> None:
    harness.feed.close()
    assert (await harness.http.post("/api/v1/alerts", json=notification(), headers=AUTH)).status_code == 503
    # Not kept: the retry after a restart is taken as new.
    assert (await harness.http.post("/api/v1/alerts", json=notification(), headers=AUTH)).status_code == 503


async def test_readiness_says_so_once_the_pipeline_stops_taking_alerts(harness: Harness) -> None:
    assert (await harness.http.get("/readyz")).status_code == 200
    harness.feed.close()
    unready = await harness.http.get("/readyz")
    assert (unready.status_code, unready.json()["checks"]) == (503, {"store": "ok", "alerts": "closed"})


async def test_remote_write_samples_reach_the_pushed_source(harness: Harness) -> None:
    samples = [MetricSample(SeriesKey.of("up", {"job": "a"}), 1000.0 + i, float(i)) for i in range(3)]
    reply = await harness.http.post("/api/v1/write", content=encode_write_request(samples), headers=AUTH)
    assert reply.status_code == 204
    await harness.sink.close()
    received = [sample async for batch in harness.sink.batches() for sample in batch]
    assert received == samples
    assert harness.counter("aiops_remote_write_samples_total") == 3


@pytest.fixture
def engine_interpreter() -> Iterator[None]:
    """The interpreter as the engine's processes set it up, for this test only: the objects alive at start-up (here,
    everything earlier tests left) frozen out of the collector's way, and short thread switches."""
    previous = sys.getswitchinterval()
    freeze_startup_objects()
    shorten_thread_switches()
    yield
    sys.setswitchinterval(previous)
    gc.unfreeze()


@pytest.mark.usefixtures("engine_interpreter")
async def test_decoding_a_large_remote_write_leaves_the_event_loop_free(harness: Harness) -> None:
    # 100,000 series (the sample bound), each refused for a reserved label only after it was read (over half a
    # second), so that nothing else is slow.
    samples = [MetricSample(SeriesKey.of("up", {"i": str(i), "__x": "y"}), 1000.0, 1.0) for i in range(100_000)]
    body = encode_write_request(samples)
    gaps: list[float] = []

    async def tick() -> None:
        while True:
            before = time.perf_counter()
            await asyncio.sleep(0.01)
            gaps.append(time.perf_counter() - before)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    reply = await harness.http.post("/api/v1/write", content=body, headers=AUTH)
    took = time.perf_counter() - started
    await asyncio.sleep(0.05)  # the tick that a blocked loop held up is counted too
    ticker.cancel()
    assert reply.status_code == 422
    assert took > 0.3, "the request must be slow enough for the loop's freedom to be measured"
    assert max(gaps) < took / 2


async def test_undecodable_remote_write_gets_400(harness: Harness) -> None:
    reply = await harness.http.post("/api/v1/write", content=b"\x00garbage", headers=AUTH)
    assert reply.status_code == 400
    assert harness.counter("aiops_remote_write_rejected_total") == 1


async def test_without_credentials_the_ingest_routes_do_not_exist(tmp_path: Path) -> None:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'open.db'}")
    app = create_app(
        store=store,
        metrics=EngineMetrics(CollectorRegistry()),
        status=dict,
        tokens=BOOK,
        ingest=IngestCredentials(),
        alerts=AlertFeed(),
        remote_write=PushedSource(),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        assert (await http.post("/api/v1/alerts", json=notification())).status_code == 404
        assert (await http.post("/api/v1/write", content=b"")).status_code == 404
    await store.close()


@pytest.mark.parametrize(("bearer", "basic"), [("abc", ""), ("", "user"), ("", f":{hash_secret('x')}")])
def test_bad_credential_settings_are_configuration_errors(bearer: str, basic: str) -> None:
    with pytest.raises(ConfigurationError):
        IngestCredentials.parse(bearer, basic)


async def test_a_full_alert_feed_makes_the_webhook_wait() -> None:
    feed = AlertFeed(capacity=1)
    alert = Alert("A", "f", AlertStatus.FIRING, (), 0.0)
    await feed.submit([alert])
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(feed.submit([alert]), timeout=0.05)


async def test_after_a_restart_a_redelivery_is_still_recognised(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'restart.db'}"
    body = json.dumps(notification()).encode()
    for expected in (False, True):
        store = await SqlStore.open(url)
        writer = NotificationWriter(store)
        record = AlertNotification(
            key=hashlib.sha256(body).hexdigest(),
            group_key="g",
            status="firing",
            alert_count=1,
            received_at=time.time(),
        )
        assert await writer.record(record) is not expected
        # The same process recognises it at once, without waiting for the store.
        assert await writer.record(record) is False
        await writer.flushed()
        await store.close()


V2 = {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}
WRITTEN = "X-Prometheus-Remote-Write-{}-Written"


def _v2_body(*series: tuple[list[int], float]) -> bytes:
    symbols = ["", "__name__", "up", "job", "a", "__bad"]
    request = RequestV2(symbols=symbols)
    for refs, value in series:
        request.timeseries.append(TimeSeriesV2(labels_refs=refs, samples=[SampleV2(value=value, timestamp=1_000_000)]))
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def _written(reply: httpx.Response) -> tuple[str | None, ...]:
    return tuple(reply.headers.get(WRITTEN.format(kind)) for kind in ("Samples", "Histograms", "Exemplars"))


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        'application/x-protobuf; proto="io.prometheus.write.v2.Request"',
    ],
)
async def test_a_remote_write_2_body_is_taken_and_the_reply_says_how_much_was_written(
    harness: Harness, content_type: str
) -> None:
    headers = AUTH | {"Content-Type": content_type, "X-Prometheus-Remote-Write-Version": "2.0.0"}
    reply = await harness.http.post("/api/v1/write", content=_v2_body(([1, 2, 3, 4], 7.0)), headers=headers)
    assert reply.status_code == 204
    assert _written(reply) == ("1", "0", "0")
    await harness.sink.close()
    received = [sample async for batch in harness.sink.batches() for sample in batch]
    assert received == [MetricSample(SeriesKey.of("up", {"job": "a"}), 1000.0, 7.0)]


async def test_a_partly_refused_remote_write_2_body_says_what_was_written(harness: Harness) -> None:
    body = _v2_body(([1, 2, 3, 4], 1.0), ([1, 2, 5, 4], 2.0))
    reply = await harness.http.post("/api/v1/write", content=body, headers=AUTH | V2)
    assert reply.status_code == 422
    assert reply.json()["detail"]["refused_series"]["invalid_labels"] == 1
    assert _written(reply) == ("1", "0", "0")


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (_v2_body(([1, 2, 3, 40], 1.0)), 400),  # a label reference past the symbols table
        (b"\x80\x80\x80\x64" + b"\x00" * 64, 413),  # a snappy header claiming 200 MiB
    ],
)
async def test_a_refused_remote_write_2_body_says_that_nothing_was_written(
    harness: Harness, body: bytes, status: int
) -> None:
    reply = await harness.http.post("/api/v1/write", content=body, headers=AUTH | V2)
    assert reply.status_code == status
    assert _written(reply) == ("0", "0", "0")
    assert harness.counter("aiops_remote_write_rejected_total") == 1


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v3.Request"},
        {"Content-Type": "application/x-protobuf", "Content-Encoding": "zstd"},
    ],
)
async def test_an_unknown_message_or_encoding_is_refused_with_415_and_nothing_is_read(
    harness: Harness, headers: dict[str, str]
) -> None:
    samples = [MetricSample(SeriesKey.of("up", {"job": "a"}), 1000.0, 1.0)]
    reply = await harness.http.post("/api/v1/write", content=encode_write_request(samples), headers=AUTH | headers)
    assert reply.status_code == 415
    assert _written(reply) == (None, None, None)
    await harness.sink.close()
    assert [batch async for batch in harness.sink.batches()] == []
    assert harness.counter("aiops_remote_write_rejected_total") == 1


@pytest.mark.parametrize(
    "content_type", ["application/x-protobuf", "application/x-protobuf;proto=prometheus.WriteRequest", ""]
)
async def test_remote_write_1_bodies_are_taken_with_or_without_the_proto_parameter(
    harness: Harness, content_type: str
) -> None:
    samples = [MetricSample(SeriesKey.of("up", {"job": "a"}), 1000.0, 1.0)]
    headers = AUTH | ({"Content-Type": content_type} if content_type else {})
    reply = await harness.http.post("/api/v1/write", content=encode_write_request(samples), headers=headers)
    assert reply.status_code == 204
    # 1.0 senders expect no Written headers (and 2.0 senders may not trust them on a 1.0 reply).
    assert _written(reply) == (None, None, None)
