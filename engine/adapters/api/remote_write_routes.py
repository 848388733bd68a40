"""The Prometheus remote_write receiver (``POST /api/v1/write``): every sample streamed to the detectors.

Replies follow the remote_write contract: 204 when the samples were taken, 400 for a body that cannot be decoded
(Prometheus drops a 4xx batch rather than retrying it forever), 401 for a wrong credential, 413 for a body larger
than its bound, compressed or decompressed, or carrying too many samples. Series that break the label rules (422)
or that would go past the engine's series bound (400) are left out while the other series of the request are
taken, as Mimir does: the reply says how many of each, and since Prometheus does not retry a 4xx, what was taken is
not sent twice.

The message is chosen by the ``proto=`` parameter of the Content-Type, as Remote-Write 2.0 asks: none or
``prometheus.WriteRequest`` is 1.0, ``io.prometheus.write.v2.Request`` is 2.0; any other message, or a
Content-Encoding other than snappy, is answered 415 so that the sender can fall back. Every reply to a 2.0 request
that got past that choice carries the ``X-Prometheus-Remote-Write-{Samples,Histograms,Exemplars}-Written`` counts
the 2.0 specification requires: the samples taken, and 0 histograms and exemplars, which the engine does not read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from engine.adapters.api.ingest_auth import IngestCredentials, ingest_guard
from engine.adapters.api.ingest_limits import IngestLimits, read_body, too_large
from engine.adapters.api.series_admission import admit_series
from engine.adapters.prometheus.remote_write import (
    DecodedWrite,
    RemoteWriteDecodeError,
    RemoteWriteTooLargeError,
    decode_request_v2,
    decode_write_request,
)
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.telemetry import IngestMetrics
from engine.core.detection import SERIES_LIMIT, SeriesAdmission
from engine.domain.limits import LabelProblem

INVALID_LABELS = "invalid_labels"


def add_remote_write_route(
    router: APIRouter,
    *,
    sink: PushedSource,
    credentials: IngestCredentials,
    metrics: IngestMetrics,
    limits: IngestLimits,
    series: SeriesAdmission | None = None,
) -> None:
    """Add the receiver to ``router``: the app's own router, since matching through an included router costs
    every request a second pass, and Prometheus sends every sample here. ``series`` (detection) admits new series
    within the engine's bound."""
    guard = ingest_guard(credentials, metrics, "write")
    # One request decoded at a time: the protobuf parser holds the interpreter anyway, so a second thread adds no
    # speed, and each message it parses costs tens of bytes, up to about 20 times the decoded size for a body of
    # empty messages (600 MB at the 32 MiB bound), which concurrent requests would multiply.
    decoding = asyncio.Semaphore(1)

    @router.post(
        "/api/v1/write",
        tags=["ingest"],
        status_code=204,
        response_class=Response,
        responses={
            400: {"description": "not a snappy-compressed remote_write message, or new series past the series bound"},
            415: {"description": "a protobuf message other than Remote-Write 1.0's or 2.0's, or not snappy"},
            401: {"description": "bad credential"},
            413: {"description": "body larger than its bound (compressed or decompressed), or too many samples"},
            422: {"description": "series whose name or labels break the label rules (left out)"},
        },
    )
    async def remote_write(request: Request) -> Response:
        """Prometheus remote_write, 1.0 (prometheus.WriteRequest) or 2.0 (io.prometheus.write.v2.Request), snappy
        compressed."""
        guard(request)
        message = _protobuf_message(request.headers.get("content-type", ""))
        decode = _DECODERS.get(message)
        if decode is None or request.headers.get("content-encoding", "snappy").strip().lower() != "snappy":
            metrics.remote_write_rejected.inc()
            raise HTTPException(415, f"taken: snappy-compressed {WRITE_REQUEST_V1} or {REQUEST_V2}")
        # 2.0 senders read what was written from headers on every reply; 1.0 senders expect none.
        written = _written if message == REQUEST_V2 else _nothing
        try:
            body = await read_body(request, limits.remote_write_max_body_bytes, "remote_write body")
            # Decoded off the event loop: it costs microseconds a sample (a fraction of a second for a request near
            # the sample bound), during which the loop would answer nothing else, /healthz included.
            async with decoding:
                decoded = await asyncio.to_thread(
                    decode,
                    body,
                    max_decoded_bytes=limits.remote_write_max_decoded_bytes,
                    max_samples=limits.remote_write_max_samples,
                    labels=limits.labels,
                )
        except RemoteWriteDecodeError as exc:
            metrics.remote_write_rejected.inc()
            raise _undecodable(exc, written(0)) from exc
        except HTTPException as exc:
            metrics.remote_write_rejected.inc()
            exc.headers = {**(exc.headers or {}), **written(0)}
            raise
        samples = decoded.samples
        refused = await admit_series(series, samples) if series is not None else set()
        if refused:
            samples = [sample for sample in samples if sample.series not in refused]
        await sink.push(samples)
        metrics.remote_write_samples.inc(len(samples))
        if decoded.refused:
            metrics.series_refused.labels(INVALID_LABELS).inc(len(decoded.refused))
            detail = _refusal(INVALID_LABELS, len(samples), decoded.refused, len(refused))
            raise HTTPException(422, detail, headers=written(len(samples)))
        if refused:
            raise HTTPException(
                400, _refusal(SERIES_LIMIT, len(samples), [], len(refused)), headers=written(len(samples))
            )
        return Response(status_code=204, headers=written(len(samples)))


WRITE_REQUEST_V1 = "prometheus.WriteRequest"
REQUEST_V2 = "io.prometheus.write.v2.Request"
# By the proto= parameter of the Content-Type; 1.0 senders send none.
_DECODERS: dict[str, Callable[..., DecodedWrite]] = {
    "": decode_write_request,
    WRITE_REQUEST_V1: decode_write_request,
    REQUEST_V2: decode_request_v2,
}


def _written(samples: int) -> dict[str, str]:
    return {
        "X-Prometheus-Remote-Write-Samples-Written": str(samples),
        "X-Prometheus-Remote-Write-Histograms-Written": "0",
        "X-Prometheus-Remote-Write-Exemplars-Written": "0",
    }


def _nothing(samples: int) -> dict[str, str]:
    return {}


def _undecodable(exc: RemoteWriteDecodeError, headers: dict[str, str]) -> HTTPException:
    """413 for a body past a bound, 400 for any other that cannot be decoded."""
    if isinstance(exc, RemoteWriteTooLargeError):
        error = too_large(exc.error, exc.limit, f"remote_write {exc}")
        error.headers = headers
        return error
    return HTTPException(400, f"undecodable remote_write body: {exc}", headers=headers)


def _protobuf_message(content_type: str) -> str:
    """The ``proto=`` parameter of a Content-Type (empty when there is none: 1.0 senders send none)."""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "proto":
            return value.strip().strip('"')
    return ""


def _refusal(error: str, accepted: int, invalid: list[LabelProblem], limited: int) -> dict[str, Any]:
    first = invalid[0] if invalid else None
    message = (
        f"{len(invalid)} series refused for their labels, first: {first.message}"
        if first is not None
        else f"{limited} new series refused: the engine keeps no more series (AIOPS_MAX_SERIES)"
    )
    return {
        "error": error,
        "message": message,
        "accepted_samples": accepted,
        "refused_series": {INVALID_LABELS: len(invalid), SERIES_LIMIT: limited},
        "first_problem": None if first is None else {"kind": first.kind, "label": first.label},
    }
