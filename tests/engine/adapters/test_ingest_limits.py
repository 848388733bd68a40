"""Hostile input to the webhook and remote_write: bodies past their bounds, bad labels, floods of new series."""

import asyncio
import itertools
from collections.abc import AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from engine.adapters.api.app import create_app
from engine.adapters.api.ingest_limits import IngestLimits
from engine.adapters.api.series_admission import ADMISSION_CHUNK
from engine.adapters.prometheus.remote_write import encode_write_request
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.store.sql_store import SqlStore
from engine.adapters.telemetry import EngineMetrics
from engine.core.alert_feed import AlertFeed
from engine.core.detection import DetectionPolicy, DetectionService
from engine.domain.events import MetricSample, SeriesKey
from engine.domain.limits import CLIPPED_MARKER, LabelLimits
from tests.engine.adapters.test_ingest_routes import AUTH, CREDENTIALS, notification
from tests.engine.adapters.tokens import BOOK

LIMITS = IngestLimits(
    alert_max_body_bytes=64 * 1024,
    remote_write_max_body_bytes=64 * 1024,
    remote_write_max_decoded_bytes=256 * 1024,
    annotation_max_length=100,
    labels=LabelLimits(max_labels=8, max_name_length=32, max_value_length=64),
)
MAX_SERIES = 3


@dataclass
class Ingest:
    http: httpx.AsyncClient
    feed: AlertFeed
    sink: PushedSource
    metrics: EngineMetrics
    detection: DetectionService

    def counter(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    async def pushed(self) -> list[MetricSample]:
        await self.sink.close()
        return [sample async for batch in self.sink.batches() for sample in batch]


async def _ingest(tmp_path: Path, limits: IngestLimits) -> AsyncIterator[Ingest]:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}")
    metrics = EngineMetrics(CollectorRegistry())
    detection = DetectionService.from_registry(DetectionPolicy(), max_series=MAX_SERIES)
    detection.add_refusal_listener(metrics.on_series_refused)
    feed, sink = AlertFeed(), PushedSource()
    app = create_app(
        store=store,
        metrics=metrics,
        status=dict,
        tokens=BOOK,
        ingest=CREDENTIALS,
        alerts=feed,
        remote_write=sink,
        ingest_limits=limits,
        series=detection,
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield Ingest(http, feed, sink, metrics, detection)
    await store.close()


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    async for harness in _ingest(tmp_path, LIMITS):
        yield harness


@pytest.fixture
async def default_ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    async for harness in _ingest(tmp_path, IngestLimits()):
        yield harness


def _with_alert(**changes: Any) -> dict[str, Any]:
    body = notification()
    alert = body["alerts"][0]
    for key, value in changes.items():
        alert[key] = value if not isinstance(value, dict) else {**alert.get(key, {}), **value}
    return body


def _too_large(reply: httpx.Response, limit: int) -> None:
    assert reply.status_code == 413
    detail = reply.json()["detail"]
    assert detail["error"] == "body_too_large"
    assert detail["limit"] == limit


# The webhook


async def test_a_50_mb_annotation_is_refused_with_413(default_ingest: Ingest) -> None:
    body = _with_alert(annotations={"summary": "x" * 50_000_000})
    reply = await default_ingest.http.post("/api/v1/alerts", json=body, headers=AUTH)
    _too_large(reply, IngestLimits().alert_max_body_bytes)
    assert default_ingest.feed.take_waiting() == []


async def test_a_streamed_body_past_the_bound_is_refused_without_a_length(ingest: Ingest) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b" " * 4096

    reply = await ingest.http.post("/api/v1/alerts", content=chunks(), headers=AUTH)
    assert "content-length" not in reply.request.headers
    _too_large(reply, LIMITS.alert_max_body_bytes)


async def test_long_annotations_are_kept_clipped(ingest: Ingest) -> None:
    body = _with_alert(annotations={"summary": "s" * 10_000, "runbook_url": "http://runbooks/latency"})
    reply = await ingest.http.post("/api/v1/alerts", json=body, headers=AUTH)
    assert reply.status_code == 200
    [[alert]] = ingest.feed.take_waiting()
    annotations = dict(alert.annotations)
    assert len(annotations["summary"]) == LIMITS.annotation_max_length
    assert annotations["summary"].endswith(CLIPPED_MARKER)
    assert annotations["runbook_url"] == "http://runbooks/latency"


@pytest.mark.parametrize(
    ("where", "labels", "kind", "label"),
    [
        ("labels", {"": "x"}, "label_name", ""),
        ("labels", {"__name__": "up"}, "reserved_label", "__name__"),
        ("labels", {"has space": "x"}, "label_name", "has space"),
        ("labels", {"nul\u0000": "x"}, "label_name", "nul\u0000"),
        ("labels", {"model": "fraud\u0000"}, "label_value", "model"),
        ("labels", {"model": "m" * 65}, "value_too_long", "model"),
        ("labels", {"n" * 33: "x"}, "name_too_long", "n" * 33),
        ("annotations", {"summary": "a\u0000b"}, "label_value", "summary"),
        ("annotations", {"bad-name": "x"}, "label_name", "bad-name"),
    ],
)
async def test_bad_labels_get_422_naming_the_alert_and_label(
    ingest: Ingest, where: str, labels: dict[str, str], kind: str, label: str
) -> None:
    reply = await ingest.http.post("/api/v1/alerts", json=_with_alert(**{where: labels}), headers=AUTH)
    assert reply.status_code == 422
    [error] = reply.json()["detail"]
    assert error["type"] == kind
    assert error["loc"] == ["body", "alerts", 0, where, label]
    assert ingest.feed.take_waiting() == []


async def test_too_many_labels_get_422(ingest: Ingest) -> None:
    labels = {f"label_{n}": "x" for n in range(9)}
    reply = await ingest.http.post("/api/v1/alerts", json=_with_alert(labels=labels), headers=AUTH)
    assert reply.status_code == 422
    [error] = reply.json()["detail"]
    assert error["type"] == "too_many_labels"
    assert error["loc"] == ["body", "alerts", 0, "labels"]


@pytest.mark.parametrize("field", ["groupKey", "receiver", "externalURL"])
async def test_nul_in_a_stored_text_of_the_notification_gets_422(ingest: Ingest, field: str) -> None:
    body = notification()
    body[field] = "a\u0000b"
    reply = await ingest.http.post("/api/v1/alerts", json=body, headers=AUTH)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", field]


async def test_nul_in_a_fingerprint_gets_422(ingest: Ingest) -> None:
    reply = await ingest.http.post("/api/v1/alerts", json=_with_alert(fingerprint="c0\u0000ffee"), headers=AUTH)
    assert reply.status_code == 422
    assert reply.json()["detail"][0]["loc"] == ["body", "alerts", 0, "fingerprint"]


# remote_write


def _series(count: int, start: int = 0) -> list[MetricSample]:
    return [MetricSample(SeriesKey.of("up", {"pod": f"pod-{n}"}), 1000.0, 1.0) for n in range(start, start + count)]


async def test_a_body_that_claims_to_expand_to_200_mb_is_refused_before_decompressing(default_ingest: Ingest) -> None:
    # A snappy block is its decoded length (a varint) and then the compressed data: the header alone is enough.
    size = 200 * 1024 * 1024
    header = bytes([size & 0x7F | 0x80, size >> 7 & 0x7F | 0x80, size >> 14 & 0x7F | 0x80, size >> 21])
    body = header + b"\x00" * 64
    reply = await default_ingest.http.post("/api/v1/write", content=body, headers=AUTH)
    _too_large(reply, IngestLimits().remote_write_max_decoded_bytes)
    assert default_ingest.counter("aiops_remote_write_rejected_total") == 1


async def test_a_body_that_expands_past_the_bound_is_refused_with_413(ingest: Ingest) -> None:
    label = {"blob": "b" * 300_000}
    body = encode_write_request([MetricSample(SeriesKey("up", tuple(label.items())), 1000.0, 1.0)])
    assert len(body) < LIMITS.remote_write_max_body_bytes
    reply = await ingest.http.post("/api/v1/write", content=body, headers=AUTH)
    _too_large(reply, LIMITS.remote_write_max_decoded_bytes)
    assert await ingest.pushed() == []


async def test_a_compressed_body_past_the_bound_is_refused_with_413(ingest: Ingest) -> None:
    reply = await ingest.http.post("/api/v1/write", content=b"\x01" * (70 * 1024), headers=AUTH)
    _too_large(reply, LIMITS.remote_write_max_body_bytes)
    assert ingest.counter("aiops_remote_write_rejected_total") == 1


@pytest.mark.parametrize(
    ("series", "kind"),
    [
        (SeriesKey("up", (("has space", "x"),)), "label_name"),
        (SeriesKey("up", (("__meta_pod", "x"),)), "reserved_label"),
        (SeriesKey("up", (("pod", "a\u0000b"),)), "label_value"),
        (SeriesKey("up", (("pod", "p" * 65),)), "value_too_long"),
        (SeriesKey("up", tuple((f"l{n}", "x") for n in range(9))), "too_many_labels"),
        (SeriesKey("5xx-rate"), "metric_name"),
        (SeriesKey(""), "metric_name"),
    ],
)
async def test_series_with_bad_labels_are_left_out_with_422_and_the_rest_taken(
    ingest: Ingest, series: SeriesKey, kind: str
) -> None:
    good = _series(2)
    body = encode_write_request([good[0], MetricSample(series, 1000.0, 5.0), good[1]])
    reply = await ingest.http.post("/api/v1/write", content=body, headers=AUTH)
    assert reply.status_code == 422
    detail = reply.json()["detail"]
    assert detail["error"] == "invalid_labels"
    assert detail["accepted_samples"] == 2
    assert detail["refused_series"] == {"invalid_labels": 1, "series_limit": 0}
    assert detail["first_problem"]["kind"] == kind
    assert await ingest.pushed() == good
    assert ingest.counter("aiops_series_refused_total", {"reason": "invalid_labels"}) == 1


async def test_new_series_past_the_bound_are_refused_and_the_series_kept_go_on(ingest: Ingest) -> None:
    reply = await ingest.http.post("/api/v1/write", content=encode_write_request(_series(5)), headers=AUTH)
    assert reply.status_code == 400
    detail = reply.json()["detail"]
    assert detail["error"] == "series_limit"
    assert detail["accepted_samples"] == MAX_SERIES
    assert detail["refused_series"] == {"invalid_labels": 0, "series_limit": 2}
    assert ingest.detection.series_count == MAX_SERIES
    assert ingest.counter("aiops_series_refused_total", {"reason": "series_limit"}) == 2
    again = await ingest.http.post("/api/v1/write", content=encode_write_request(_series(MAX_SERIES)), headers=AUTH)
    assert again.status_code == 204
    assert [sample.series for sample in await ingest.pushed()] == [s.series for s in _series(MAX_SERIES) * 2]


async def test_a_flood_of_new_series_keeps_the_series_count_at_the_bound(ingest: Ingest) -> None:
    for first in range(0, 20_000, 1_000):
        reply = await ingest.http.post(
            "/api/v1/write", content=encode_write_request(_series(1_000, first)), headers=AUTH
        )
        assert reply.status_code == 400
    assert ingest.detection.series_count == MAX_SERIES
    assert ingest.counter("aiops_series_refused_total", {"reason": "series_limit"}) == 20_000 - MAX_SERIES


async def test_a_request_with_more_samples_than_the_bound_is_refused_with_413(tmp_path: Path) -> None:
    limits = IngestLimits(remote_write_max_samples=100)
    async for ingest in _ingest(tmp_path, limits):
        reply = await ingest.http.post("/api/v1/write", content=encode_write_request(_series(101)), headers=AUTH)
        assert reply.status_code == 413
        assert reply.json()["detail"]["error"] == "too_many_samples"
        assert reply.json()["detail"]["limit"] == 100
        assert await ingest.pushed() == []
        assert ingest.detection.series_count == 0


class _RecordingAdmission:
    """Admits every series and notes, for each call, the keys and how far a concurrent task had got by then."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[SeriesKey], int]] = []
        self.ticks = 0

    def admit(self, series: Iterable[SeriesKey]) -> set[SeriesKey]:
        self.calls.append((list(series), self.ticks))
        return set()

    async def make_room(self, series: Collection[SeriesKey]) -> None:
        return


async def test_new_series_of_a_large_request_are_admitted_a_chunk_at_a_time_with_the_loop_free_between(
    tmp_path: Path,
) -> None:
    store = await SqlStore.open(f"sqlite+aiosqlite:///{tmp_path / 'ingest.db'}")
    admission = _RecordingAdmission()
    app = create_app(
        store=store,
        metrics=EngineMetrics(CollectorRegistry()),
        status=dict,
        tokens=BOOK,
        ingest=CREDENTIALS,
        alerts=AlertFeed(),
        remote_write=PushedSource(),
        ingest_limits=IngestLimits(),
        series=admission,
    )

    async def tick() -> None:
        while True:
            admission.ticks += 1
            await asyncio.sleep(0)

    count = 2 * ADMISSION_CHUNK + 500
    sent = _series(count)
    ticker = asyncio.create_task(tick())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            reply = await http.post("/api/v1/write", content=encode_write_request(sent), headers=AUTH)
    finally:
        ticker.cancel()
        await store.close()
    assert reply.status_code == 204
    assert [len(keys) for keys, _ in admission.calls] == [ADMISSION_CHUNK, ADMISSION_CHUNK, 500]
    assert [key for keys, _ in admission.calls for key in keys] == [sample.series for sample in sent]
    ticks = [at for _, at in admission.calls]
    assert all(later > earlier for earlier, later in itertools.pairwise(ticks)), ticks
