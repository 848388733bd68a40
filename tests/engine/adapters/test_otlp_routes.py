"""The OTLP/HTTP metrics receiver through the app: encodings, answers per the OTLP/HTTP specification, bounds and
hostile bodies."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)

from engine.adapters.api.ingest_limits import IngestLimits
from engine.adapters.api.otlp_status import Status
from engine.domain.events import MetricSample, SeriesKey
from engine.domain.limits import LabelLimits
from tests.engine.adapters.test_ingest_limits import MAX_SERIES, Ingest, _ingest
from tests.engine.adapters.test_ingest_routes import AUTH
from tests.support.otlp_requests import T0, S, gauge, number, request, sum_metric

PROTOBUF = {**AUTH, "Content-Type": "application/x-protobuf"}
JSON = {**AUTH, "Content-Type": "application/json"}
LIMITS = IngestLimits(
    remote_write_max_body_bytes=64 * 1024,
    remote_write_max_decoded_bytes=256 * 1024,
    otlp_max_decoded_bytes=48 * 1024,
    remote_write_max_samples=1000,
    labels=LabelLimits(max_labels=8, max_name_length=32, max_value_length=64),
)


@pytest.fixture
async def ingest(tmp_path: Path) -> AsyncIterator[Ingest]:
    async for harness in _ingest(tmp_path, LIMITS):
        yield harness


def _gauges(count: int, *, value_length: int = 1) -> ExportMetricsServiceRequest:
    points = [number(T0 + S, float(n), {"n": str(n) * value_length}) for n in range(count)]
    return request(gauge("queue_depth", points), resource={"service.name": "api"})


def _response(reply: httpx.Response) -> ExportMetricsServiceResponse:
    response = ExportMetricsServiceResponse()
    if reply.headers["content-type"] == "application/x-protobuf":
        response.ParseFromString(reply.content)
    else:
        json_format.Parse(reply.content, response)
    return response


def _series(n: int) -> SeriesKey:
    return SeriesKey.of("queue_depth", {"service_name": "api", "n": str(n)})


async def test_a_protobuf_request_reaches_the_detectors_and_gets_an_empty_response(ingest: Ingest) -> None:
    reply = await ingest.http.post("/v1/metrics", content=_gauges(2).SerializeToString(), headers=PROTOBUF)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-protobuf"
    assert _response(reply) == ExportMetricsServiceResponse()
    assert sorted(await ingest.pushed(), key=str) == [
        MetricSample(_series(0), 1_700_000_001.0, 0.0),
        MetricSample(_series(1), 1_700_000_001.0, 1.0),
    ]
    assert ingest.counter("aiops_otlp_samples_total") == 2


async def test_json_and_gzip_are_taken(ingest: Ingest) -> None:
    body = gzip.compress(json_format.MessageToJson(_gauges(1)).encode())
    reply = await ingest.http.post("/v1/metrics", content=body, headers={**JSON, "Content-Encoding": "gzip"})
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {}
    assert await ingest.pushed() == [MetricSample(_series(0), 1_700_000_001.0, 0.0)]


async def test_counters_are_rated_across_requests(ingest: Ingest) -> None:
    for time, value in ((T0 + S, 10), (T0 + 3 * S, 30)):
        body = request(sum_metric("requests", [number(time, value)]), resource={}).SerializeToString()
        assert (await ingest.http.post("/v1/metrics", content=body, headers=PROTOBUF)).status_code == 200
    assert await ingest.pushed() == [MetricSample(SeriesKey.of("requests"), 1_700_000_003.0, 10.0)]


async def test_series_breaking_the_label_rules_are_a_partial_success(ingest: Ingest) -> None:
    message = _gauges(2)
    message.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[1].attributes[0].value.string_value = (
        "x" * 65
    )
    reply = await ingest.http.post("/v1/metrics", content=message.SerializeToString(), headers=PROTOBUF)
    assert reply.status_code == 200
    partial = _response(reply).partial_success
    assert partial.rejected_data_points == 1
    assert "label rules" in partial.error_message
    assert await ingest.pushed() == [MetricSample(_series(0), 1_700_000_001.0, 0.0)]
    assert ingest.counter("aiops_series_refused_total", {"reason": "invalid_labels"}) == 1


async def test_a_request_of_only_bad_series_gets_422(ingest: Ingest) -> None:
    reply = await ingest.http.post(
        "/v1/metrics", content=_gauges(1, value_length=65).SerializeToString(), headers=PROTOBUF
    )
    assert reply.status_code == 422


async def test_new_series_past_the_bound_are_a_partial_success_and_then_a_400(ingest: Ingest) -> None:
    body = json_format.MessageToJson(_gauges(MAX_SERIES + 2)).encode()
    reply = await ingest.http.post("/v1/metrics", content=body, headers=JSON)
    assert reply.status_code == 200
    assert reply.json()["partialSuccess"]["rejectedDataPoints"] == "2"
    assert ingest.detection.series_count == MAX_SERIES
    others = request(gauge("other", [number(T0 + S, 1.0)]), resource={}).SerializeToString()
    assert (await ingest.http.post("/v1/metrics", content=others, headers=PROTOBUF)).status_code == 400


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Content-Type": "text/plain"}, 415),
        ({"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}, 415),
        ({"Content-Type": "application/x-protobuf", "Authorization": "Bearer wrong"}, 401),
    ],
)
async def test_other_media_types_encodings_and_credentials_are_refused(
    ingest: Ingest, headers: dict[str, str], status: int
) -> None:
    reply = await ingest.http.post("/v1/metrics", content=_gauges(1).SerializeToString(), headers={**AUTH, **headers})
    assert reply.status_code == status


@pytest.mark.parametrize(
    ("body", "headers"),
    [
        (b"\x0a\xff\xff\xff\xff\x0f", PROTOBUF),
        (b"{not json", JSON),
        (b"\x1f\x8b\x08\x00garbage", {**PROTOBUF, "Content-Encoding": "gzip"}),
        (gzip.compress(b"\x0a\x02")[:-6], {**PROTOBUF, "Content-Encoding": "gzip"}),
        (b'{"resourceMetrics": [' * 1500 + b"]" * 1500 + b"}", JSON),
    ],
)
async def test_undecodable_bodies_get_400(ingest: Ingest, body: bytes, headers: dict[str, str]) -> None:
    reply = await ingest.http.post("/v1/metrics", content=body, headers=headers)
    assert reply.status_code == 400
    assert ingest.counter("aiops_otlp_rejected_total") == 1


def _status(reply: httpx.Response) -> tuple[int, int, str]:
    """The HTTP status, and the code and message of the ``google.rpc.Status`` an error reply carries (protobuf or
    JSON, as the request was)."""
    if reply.headers["content-type"] == "application/x-protobuf":
        status = Status.FromString(reply.content)
        return reply.status_code, status.code, status.message
    document = reply.json()
    return reply.status_code, document["code"], document["message"]


def _detail(reply: httpx.Response) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(_status(reply)[2])
    return detail


async def test_errors_are_google_rpc_status_messages_in_the_request_encoding(ingest: Ingest) -> None:
    bad = await ingest.http.post("/v1/metrics", content=b"\x0a\xff\xff\xff\xff\x0f", headers=PROTOBUF)
    code, message = Status.FromString(bad.content).code, Status.FromString(bad.content).message
    assert (bad.status_code, bad.headers["content-type"], code) == (400, "application/x-protobuf", 3)
    assert message.startswith("undecodable OTLP request")
    not_json = await ingest.http.post("/v1/metrics", content=b"{not json", headers=JSON)
    assert (not_json.headers["content-type"], set(not_json.json())) == ("application/json", {"code", "message"})
    wrong = await ingest.http.post("/v1/metrics", content=b"", headers={**PROTOBUF, "Authorization": "Bearer wrong"})
    assert _status(wrong)[:2] == (401, 16)


async def test_bodies_past_their_bounds_get_413(ingest: Ingest) -> None:
    large = await ingest.http.post("/v1/metrics", content=b"\x00" * (64 * 1024 + 1), headers=PROTOBUF)
    assert (large.status_code, _detail(large)["error"]) == (413, "body_too_large")
    # A gzip bomb: a few hundred bytes that would expand to 10 MiB.
    bomb = gzip.compress(b"\x00" * (10 * 1024 * 1024))
    expanded = await ingest.http.post("/v1/metrics", content=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"})
    assert (expanded.status_code, _detail(expanded)["limit"]) == (413, 48 * 1024)
    # Within the body bound but past the OTLP bound, which a request parsed whole needs: refused before parsing.
    plain = await ingest.http.post("/v1/metrics", content=b"\x0a\x00" * (25 * 1024), headers=PROTOBUF)
    assert (plain.status_code, _detail(plain)["limit"]) == (413, 48 * 1024)
    many = await ingest.http.post("/v1/metrics", content=_gauges(1001).SerializeToString(), headers=PROTOBUF)
    assert (many.status_code, _detail(many)["error"]) == (413, "too_many_samples")
    assert ingest.counter("aiops_otlp_rejected_total") == 4
