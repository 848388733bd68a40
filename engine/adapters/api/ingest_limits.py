"""How much the ingest endpoints take from one request, and reading a request body no larger than its bound.

A body is read chunk by chunk and refused (413) as soon as it passes its bound, or at once when its declared
``Content-Length`` does, so that a huge body never sits in memory whole. Refusals carry a structured ``detail``
(``error``, ``limit``, ``message``) that a sender's logs show as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import HTTPException, Request

from engine.domain.limits import LabelLimits

MIB = 1024 * 1024


@dataclass(frozen=True)
class IngestLimits:
    """Bounds on one webhook notification or remote_write request."""

    # An Alertmanager notification of a large group (thousands of alerts with their annotations) stays well below.
    alert_max_body_bytes: int = 10 * MIB
    # A remote_write request is a few hundred KiB at Prometheus's defaults (2,000 samples a request).
    remote_write_max_body_bytes: int = 8 * MIB
    # Read from the snappy header before decompressing: what the body claims to expand to.
    remote_write_max_decoded_bytes: int = 32 * MIB
    # An OTLP request is parsed whole, each two-byte empty attribute or point becoming an object of tens of bytes;
    # a collector's batch of 8,192 data points is about a MiB.
    otlp_max_decoded_bytes: int = 2 * MIB
    # Fifty times Prometheus's max_samples_per_send default; each sample is an object until detection takes it.
    remote_write_max_samples: int = 100_000
    # Alert annotations longer than this are stored clipped (with a marker), not refused.
    annotation_max_length: int = 4096
    labels: LabelLimits = field(default_factory=LabelLimits)


def too_large(error: str, limit: int, message: str) -> HTTPException:
    """413 with ``error`` (``body_too_large``, ``too_many_samples``) and the ``limit`` passed."""
    return HTTPException(413, {"error": error, "limit": limit, "message": message})


def body_too_large(what: str, limit: int) -> HTTPException:
    return too_large("body_too_large", limit, f"{what} larger than {limit} bytes")


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The request's body, or 413 once it is known to be larger than ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise body_too_large(what, limit)
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > limit:
            raise body_too_large(what, limit)
        body += chunk
    return bytes(body)
