"""The Prometheus remote_write receiver (``POST /api/v1/write``): every sample streamed to the detectors.

Replies follow the remote_write contract: 204 when the samples were taken, 400 for a body that cannot be decoded
(Prometheus drops a 4xx batch rather than retrying it forever), 401 for a wrong credential, 413 for a body larger
than its bound, compressed or decompressed, or carrying too many samples. Series that break the label rules (422)
or that would go past the engine's series bound (400) are left out while the other series of the request are
taken, as Mimir does: the reply says how many of each, and since Prometheus does not retry a 4xx, what was taken is
not sent twice.

Remote-Write 2.0 bodies (``Content-Type: application/x-protobuf;proto=io.prometheus.write.v2.Request``) are not
read: they are answered 415, as that specification asks of a receiver that only takes 1.0, so that the sender falls
back to 1.0 instead of having its samples read as something else.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from engine.adapters.api.ingest_auth import IngestCredentials, ingest_guard
from engine.adapters.api.ingest_limits import IngestLimits, read_body, too_large
from engine.adapters.api.series_admission import admit_series
from engine.adapters.prometheus.remote_write import (
    RemoteWriteDecodeError,
    RemoteWriteTooLargeError,
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

    @router.post(
        "/api/v1/write",
        tags=["ingest"],
        status_code=204,
        response_class=Response,
        responses={
            400: {"description": "not a snappy-compressed WriteRequest, or new series past the series bound"},
            415: {"description": "a Remote-Write 2.0 body (only 1.0 is taken)"},
            401: {"description": "bad credential"},
            413: {"description": "body larger than its bound (compressed or decompressed), or too many samples"},
            422: {"description": "series whose name or labels break the label rules (left out)"},
        },
    )
    async def remote_write(request: Request) -> Response:
        """Prometheus remote_write (protocol 1.0): snappy-compressed protobuf WriteRequest."""
        guard(request)
        if _protobuf_message(request.headers.get("content-type", "")) not in ("", WRITE_REQUEST_V1):
            metrics.remote_write_rejected.inc()
            raise HTTPException(415, "only Remote-Write 1.0 (prometheus.WriteRequest) is taken")
        try:
            body = await read_body(request, limits.remote_write_max_body_bytes, "remote_write body")
            # Decoded off the event loop: it costs tens of microseconds a sample (a second or more for a request
            # near the sample bound), during which the loop would answer nothing else, /healthz included.
            decoded = await asyncio.to_thread(
                decode_write_request,
                body,
                max_decoded_bytes=limits.remote_write_max_decoded_bytes,
                max_samples=limits.remote_write_max_samples,
                labels=limits.labels,
            )
        except RemoteWriteTooLargeError as exc:
            metrics.remote_write_rejected.inc()
            raise too_large(exc.error, exc.limit, f"remote_write {exc}") from exc
        except RemoteWriteDecodeError as exc:
            metrics.remote_write_rejected.inc()
            raise HTTPException(400, f"undecodable remote_write body: {exc}") from exc
        except HTTPException:
            metrics.remote_write_rejected.inc()
            raise
        samples = decoded.samples
        refused = await admit_series(series, samples) if series is not None else set()
        if refused:
            samples = [sample for sample in samples if sample.series not in refused]
        await sink.push(samples)
        metrics.remote_write_samples.inc(len(samples))
        if decoded.refused:
            metrics.series_refused.labels(INVALID_LABELS).inc(len(decoded.refused))
            raise HTTPException(422, _refusal(INVALID_LABELS, len(samples), decoded.refused, len(refused)))
        if refused:
            raise HTTPException(400, _refusal(SERIES_LIMIT, len(samples), [], len(refused)))
        return Response(status_code=204)


WRITE_REQUEST_V1 = "prometheus.WriteRequest"


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
