"""The Prometheus remote_write receiver (``POST /api/v1/write``): every sample streamed to the detectors.

Replies follow the remote_write contract: 204 when the samples were taken, 400 for a body that cannot be decoded
(Prometheus drops a 4xx batch rather than retrying it forever), 401 for a wrong credential.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response

from engine.adapters.api.ingest_auth import IngestCredentials, ingest_guard
from engine.adapters.prometheus.remote_write import RemoteWriteDecodeError, decode_write_request
from engine.adapters.sources.pushed import PushedSource
from engine.adapters.telemetry import IngestMetrics

# A remote_write batch is at most a few MiB (max_samples_per_send 2000 by default); refuse anything far larger.
MAX_BODY_BYTES = 32 * 1024 * 1024


def add_remote_write_route(
    router: APIRouter, *, sink: PushedSource, credentials: IngestCredentials, metrics: IngestMetrics
) -> None:
    """Add the receiver to ``router``: the app's own router, since matching through an included router costs
    every request a second pass, and Prometheus sends every sample here."""
    guard = ingest_guard(credentials, metrics, "write")

    @router.post(
        "/api/v1/write",
        tags=["ingest"],
        status_code=204,
        response_class=Response,
        responses={
            400: {"description": "not a snappy-compressed WriteRequest"},
            401: {"description": "bad credential"},
        },
    )
    async def remote_write(request: Request) -> Response:
        """Prometheus remote_write (protocol 1.0): snappy-compressed protobuf WriteRequest."""
        guard(request)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            metrics.remote_write_rejected.inc()
            raise HTTPException(413, "remote_write body too large")
        try:
            samples = decode_write_request(body)
        except RemoteWriteDecodeError as exc:
            metrics.remote_write_rejected.inc()
            raise HTTPException(400, f"undecodable remote_write body: {exc}") from exc
        await sink.push(samples)
        metrics.remote_write_samples.inc(len(samples))
        return Response(status_code=204)
