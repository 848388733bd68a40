"""The OTLP/HTTP metrics receiver (``POST /v1/metrics``): what an OpenTelemetry SDK or collector exports, streamed to
the detectors beside remote_write.

A request is an ``ExportMetricsServiceRequest`` in protobuf (``Content-Type: application/x-protobuf``) or proto3
JSON (``application/json``), gzip-compressed or not (``Content-Encoding: gzip``); it is authenticated, bounded and
admitted as remote_write is (the same credentials, compressed body bound and sample bound; decompressed, a body may
be at most ``AIOPS_OTLP_MAX_DECODED_BYTES``, 2 MiB: the protobuf library builds every part of a request before it can
be counted, tens of bytes for a two-byte empty attribute, so 32 MiB of them took 900 MB). It is flattened into
series by ``otlp.metrics`` (the module the Kafka formats use): counters become rates, so the receiver keeps the
previous point of each rated series.

Replies follow the OTLP/HTTP specification: 200 with an ``ExportMetricsServiceResponse`` in the request's encoding;
when some series were refused (their labels break the label rules, or they are new past the engine's series bound)
and others taken, still 200, its ``partial_success`` saying how many data points were rejected and why, so that the
sender does not retry what was taken. A request of which nothing could be taken for those reasons gets 422 (labels)
or 400 (series bound); 400 for a body that does not decode, 401 for a wrong credential, 413 for a body or a sample
count past its bound, 415 for another content type or encoding. None of these is retried by an OTLP exporter. Each
error's body is a ``google.rpc.Status`` in the request's encoding (``otlp_status``).
"""

from __future__ import annotations

import asyncio
import threading
import zlib

from fastapi import APIRouter, HTTPException, Request, Response
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceResponse

from engine.adapters.api.ingest_auth import IngestCredentials, ingest_guard
from engine.adapters.api.ingest_limits import IngestLimits, body_too_large, read_body, too_large
from engine.adapters.api.otlp_status import JSON, PROTOBUF, status_reply
from engine.adapters.api.remote_write_routes import INVALID_LABELS
from engine.adapters.api.series_admission import admit_series
from engine.adapters.otlp.metrics import Flattened, OtlpDecodeError, OtlpFlattener
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.telemetry import IngestMetrics
from engine.core.detection import SeriesAdmission
from engine.domain.events import MetricSample


class _TooManySamplesError(ValueError):
    def __init__(self, count: int, limit: int) -> None:
        super().__init__(f"OTLP request of {count} data points, more than {limit}")
        self.limit = limit


class _Decoder:
    """Bodies to flattened requests, in worker threads, one at a time: the flattener's state (previous points,
    cached keys) is one, and a parsed request takes many times its size in memory, which concurrent requests would
    multiply."""

    def __init__(self, limits: IngestLimits) -> None:
        self._flattener = OtlpFlattener(limits.labels)
        self._lock = threading.Lock()
        self._limits = limits

    def __call__(self, body: bytes, media: str, gzipped: bool) -> Flattened:
        with self._lock:
            body = _decompressed(body, gzipped, self._limits.otlp_max_decoded_bytes)
            return self._flattener.read(body, protobuf=media == PROTOBUF, check_points=self._check_points)

    def _check_points(self, points: int) -> None:
        if points > self._limits.remote_write_max_samples:
            raise _TooManySamplesError(points, self._limits.remote_write_max_samples)


def add_otlp_route(
    router: APIRouter,
    *,
    sink: PushedSource,
    credentials: IngestCredentials,
    metrics: IngestMetrics,
    limits: IngestLimits,
    series: SeriesAdmission | None = None,
) -> None:
    """Add the receiver to ``router``; ``series`` (detection) admits new series within the engine's bound."""
    guard = ingest_guard(credentials, metrics, "otlp")
    decode = _Decoder(limits)

    @router.post(
        "/v1/metrics",
        tags=["ingest"],
        response_class=Response,
        responses={
            200: {"description": "taken (partial_success says how many data points were rejected, if any)"},
            400: {"description": "not an OTLP metrics request, or only new series past the series bound"},
            401: {"description": "bad credential"},
            413: {"description": "body larger than its bound (compressed or decompressed), or too many data points"},
            415: {
                "description": "a content type other than application/x-protobuf or application/json, or an "
                "encoding other than gzip"
            },
            422: {"description": "only series whose name or labels break the label rules"},
        },
    )
    async def otlp_metrics(request: Request) -> Response:
        """OTLP/HTTP metrics export (protobuf or JSON, gzip or not); errors are ``google.rpc.Status`` messages."""
        media = request.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            return await receive(request, media)
        except HTTPException as exc:
            return status_reply(exc, media)

    async def receive(request: Request, media: str) -> Response:
        guard(request)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        if media not in (PROTOBUF, JSON) or encoding not in ("", "identity", "gzip"):
            metrics.otlp_rejected.inc()
            raise HTTPException(415, f"OTLP/HTTP takes {PROTOBUF} or {JSON}, gzip-compressed or not")
        try:
            body = await read_body(request, limits.remote_write_max_body_bytes, "OTLP body")
            # Decoded off the event loop, as remote_write is: a large request takes a good part of a second.
            flattened = await asyncio.to_thread(decode, body, media, encoding == "gzip")
        except _TooManySamplesError as exc:
            metrics.otlp_rejected.inc()
            raise too_large("too_many_samples", exc.limit, str(exc)) from exc
        except OtlpDecodeError as exc:
            metrics.otlp_rejected.inc()
            raise HTTPException(400, f"undecodable OTLP request: {exc}") from exc
        except HTTPException:
            metrics.otlp_rejected.inc()
            raise
        samples = [
            MetricSample(key, timestamp, value)
            for key, points in flattened.runs
            for timestamp, value in points.tolist()
        ]
        refused = await admit_series(series, samples) if series is not None else set()
        limited = sum(len(points) for key, points in flattened.runs if key in refused)
        if refused:
            samples = [sample for sample in samples if sample.series not in refused]
        await sink.push(samples)
        metrics.otlp_samples.inc(len(samples))
        invalid = sum(count for _, count in flattened.refused)
        if flattened.refused:
            metrics.series_refused.labels(INVALID_LABELS).inc(len(flattened.refused))
        if not samples and (invalid or limited):
            first = flattened.refused[0][0].message if flattened.refused else ""
            if invalid:
                raise HTTPException(422, f"every series breaks the label rules, first: {first}")
            raise HTTPException(400, "every series is new, and the engine keeps no more series (AIOPS_MAX_SERIES)")
        return _reply(media, invalid, limited, flattened)


def _reply(media: str, invalid: int, limited: int, flattened: Flattened) -> Response:
    reply = ExportMetricsServiceResponse()
    if invalid or limited:
        reasons = []
        if invalid:
            reasons.append(
                f"{invalid} data points of {len(flattened.refused)} series whose labels break the label rules "
                f"(first: {flattened.refused[0][0].message})"
            )
        if limited:
            reasons.append(f"{limited} samples of new series past the engine's series bound (AIOPS_MAX_SERIES)")
        reply.partial_success.rejected_data_points = invalid + limited
        reply.partial_success.error_message = "; ".join(reasons)
    if media == PROTOBUF:
        return Response(reply.SerializeToString(), media_type=PROTOBUF)
    return Response(json_format.MessageToJson(reply, indent=None), media_type=JSON)


def _decompressed(body: bytes, gzipped: bool, limit: int) -> bytes:
    """The body as it is parsed, 413 if it is (or would expand to) more than ``limit`` bytes."""
    if gzipped:
        return _gunzip(body, limit)
    if len(body) > limit:
        raise body_too_large("OTLP body", limit)
    return body


def _gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body decompressed, never past ``limit`` bytes (a small body may expand a thousandfold)."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        plain = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpDecodeError(f"not gzip: {exc}") from exc
    if len(plain) > limit or inflater.unconsumed_tail:
        raise body_too_large("OTLP body once decompressed", limit)
    if not inflater.eof:
        raise OtlpDecodeError("the gzip stream is cut short")
    return plain
