"""The Alertmanager webhook receiver (``POST /api/v1/alerts``, payload version 4).

A notification is validated and recognised by the SHA-256 of its body: only a first delivery is handed to the
pipeline's alert feed, a redelivery (same bytes: Alertmanager's retries) is answered as a duplicate. The
``NotificationWriter`` remembers the digests and keeps them in the store (see there why it writes behind).
The incident stage is idempotent too, for the same alert repeated in a later notification of its group.

What a notification may hold is bounded: its body size (413 past ``IngestLimits.alert_max_body_bytes``), its
alerts' labels (the engine's label rules, 422 naming the alert and label), its texts (no NUL: PostgreSQL text
refuses it); annotations longer than ``IngestLimits.annotation_max_length`` are kept clipped.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import re
import sys
import time
from dataclasses import replace
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from msgspec import Meta
from pydantic import BaseModel

from engine.adapters.api.ingest_auth import IngestCredentials, ingest_guard
from engine.adapters.api.ingest_limits import IngestLimits, read_body
from engine.adapters.api.notification_writer import NotificationWriter
from engine.adapters.store.sql_store import AlertNotification, SqlStore
from engine.adapters.telemetry import IngestMetrics
from engine.core.alert_feed import AlertFeed, AlertFeedClosedError
from engine.domain.events import Alert, AlertStatus, Severity
from engine.domain.limits import LabelLimits, LabelProblem, clip_text, label_problem

log = logging.getLogger(__name__)

# The label rules (checked after decoding, with the configured bounds) apply to labels; these outer bounds keep a
# body from making millions of small objects before that check.
_Labels = Annotated[dict[str, str], Meta(max_length=1024)]
# Texts that are stored (PostgreSQL text refuses NUL), by their longest length.
_NO_NUL = "^[^\x00]*$"
_Text128 = Annotated[str, Meta(max_length=128, pattern=_NO_NUL)]
_Text512 = Annotated[str, Meta(max_length=512, pattern=_NO_NUL)]
_Text4096 = Annotated[str, Meta(max_length=4096, pattern=_NO_NUL)]


class AlertIn(msgspec.Struct, frozen=True):
    """One alert of a notification, under Alertmanager's field names."""

    status: Literal["firing", "resolved"]
    labels: _Labels
    starts_at: datetime = msgspec.field(name="startsAt")
    annotations: _Labels = msgspec.field(default_factory=dict)
    ends_at: datetime | None = msgspec.field(default=None, name="endsAt")
    generator_url: _Text4096 = msgspec.field(default="", name="generatorURL")
    fingerprint: _Text128 = ""

    def to_alert(self, annotation_max_length: int) -> Alert:
        # Called for every alert of every notification: positional arguments, and sorted pairs as freeze_labels
        # makes them without its conversions (decoding already made them str).
        labels = tuple(sorted(self.labels.items()))
        # Older senders leave the fingerprint out; the label set identifies the alert just as well.
        fingerprint = self.fingerprint or hashlib.sha256(repr(labels).encode()).hexdigest()[:16]
        resolved = self.status == "resolved"
        ends_at = self.ends_at.timestamp() if resolved and self.ends_at is not None and self.ends_at.year > 1 else None
        return Alert(
            self.labels.get("alertname", "unnamed"),
            fingerprint,
            AlertStatus.RESOLVED if resolved else AlertStatus.FIRING,
            labels,
            self.starts_at.timestamp(),
            ends_at,
            _severity_of(self.labels.get("severity", "")),
            tuple(sorted((name, clip_text(text, annotation_max_length)) for name, text in self.annotations.items()))
            if self.annotations
            else (),
        )

    def problem(self, labels: LabelLimits, annotations: LabelLimits) -> tuple[str, LabelProblem] | None:
        """Which of ``labels`` or ``annotations`` breaks the label rules (with their bounds) and how."""
        problem = label_problem(self.labels.items(), labels, count=len(self.labels))
        if problem is not None:
            return "labels", problem
        problem = label_problem(self.annotations.items(), annotations, count=len(self.annotations))
        return None if problem is None else ("annotations", problem)


@functools.lru_cache(maxsize=256)
def _severity_of(label: str) -> Severity:
    # Alerts carry a handful of distinct severity labels; the cache spares parsing one per alert.
    return Severity.of_alert_label(label)


# Decoded with msgspec rather than pydantic: this endpoint takes every notification, and msgspec decodes and
# checks one in about a third of the time.
class NotificationIn(msgspec.Struct, frozen=True):
    """A version-4 Alertmanager webhook notification."""

    version: Literal["4"]
    group_key: _Text4096 = msgspec.field(name="groupKey")
    status: Literal["firing", "resolved"]
    receiver: _Text512
    alerts: Annotated[list[AlertIn], Meta(max_length=10_000)]
    truncated_alerts: Annotated[int, Meta(ge=0)] = msgspec.field(default=0, name="truncatedAlerts")
    group_labels: _Labels = msgspec.field(default_factory=dict, name="groupLabels")
    common_labels: _Labels = msgspec.field(default_factory=dict, name="commonLabels")
    common_annotations: _Labels = msgspec.field(default_factory=dict, name="commonAnnotations")
    external_url: _Text4096 = msgspec.field(default="", name="externalURL")


_DECODER = msgspec.json.Decoder(NotificationIn)
# Notifications larger than this are decoded in a worker thread (about 250 alerts).
OFF_LOOP_BODY_BYTES = 64 * 1024
# Where in the body a msgspec error points: ``$.alerts[0].labels[...]`` -> ("alerts", 0, "labels"); msgspec
# writes ``[...]`` for a value in an object without naming its key.
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")


def _notification_schema() -> dict[str, Any]:
    """The body's JSON Schema for the OpenAPI document, in the shape pydantic gives one (definitions inside)."""
    definitions = msgspec.json.schema(NotificationIn)["$defs"]
    return {**definitions.pop("NotificationIn"), "$defs": definitions}


def decode_notification(body: bytes, limits: LabelLimits) -> NotificationIn:
    """The notification in ``body``, or RequestValidationError (422) saying what is wrong and where."""
    try:
        notification = _DECODER.decode(body)
    except msgspec.ValidationError as exc:
        message, _, path = str(exc).rpartition(" - at `")
        if not message:
            message, path = str(exc), "$`"
        steps = _PATH_STEP.findall(path.rstrip("`").replace("[...]", ""))
        where = tuple(name or int(index) for name, index in steps)
        raise RequestValidationError([{"loc": ("body", *where), "msg": message, "type": "value_error"}]) from exc
    except msgspec.DecodeError as exc:
        raise RequestValidationError([{"loc": ("body",), "msg": str(exc), "type": "json_invalid"}]) from exc
    # Annotation values may be longer than a label value: they are clipped instead.
    annotations = replace(limits, max_value_length=sys.maxsize)
    for index, alert in enumerate(notification.alerts):
        found = alert.problem(limits, annotations)
        if found is not None:
            part, problem = found
            loc = ("body", "alerts", index, part, *(() if problem.label is None else (problem.label,)))
            raise RequestValidationError([{"loc": loc, "msg": problem.message, "type": problem.kind}])
    return notification


class NotificationOut(BaseModel):
    accepted: int
    duplicate: bool


def add_alert_route(
    router: APIRouter,
    *,
    store: SqlStore,
    feed: AlertFeed,
    credentials: IngestCredentials,
    metrics: IngestMetrics,
    limits: IngestLimits,
) -> None:
    """Add the receiver to ``router``: the app's own router, since matching through an included router costs
    every request a second pass, and this endpoint takes every notification."""
    guard = ingest_guard(credentials, metrics, "alerts")
    accepted, duplicates = metrics.notifications.labels("accepted"), metrics.notifications.labels("duplicate")
    writer = NotificationWriter(store)

    @router.post(
        "/api/v1/alerts",
        tags=["ingest"],
        response_model=NotificationOut,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _notification_schema()}},
            }
        },
        responses={
            401: {"description": "missing or wrong credential"},
            413: {"description": "body larger than its bound"},
            422: {"description": "not a version-4 Alertmanager notification, or labels breaking the label rules"},
            503: {"description": "the pipeline is not running; Alertmanager retries"},
        },
    )
    async def receive_alerts(request: Request) -> Response:
        """Alertmanager's webhook: firing alerts open incidents, resolved ones resolve them; redelivery is a no-op."""
        guard(request)
        # The raw body is parsed here rather than by FastAPI: validating JSON bytes directly is faster, and the
        # digest of exactly what Alertmanager sent is what recognises its retries.
        body = await read_body(request, limits.alert_max_body_bytes, "Alertmanager notification")
        # A large notification (thousands of alerts) is decoded and turned into alerts off the event loop: both
        # together held it, and /healthz, about 80 ms for 5,000 alerts. Small ones are not worth a thread's hop.
        large = len(body) > OFF_LOOP_BODY_BYTES
        decode = functools.partial(decode_notification, body, limits.labels)
        notification = await asyncio.to_thread(decode) if large else decode()
        if feed.closed:
            # Checked before the notification is kept, so that Alertmanager's retry is not taken for a duplicate.
            raise HTTPException(503, "the engine's pipeline is not running")
        fresh = await writer.record(
            AlertNotification(
                key=hashlib.sha256(body).hexdigest(),
                group_key=notification.group_key,
                status=notification.status,
                alert_count=len(notification.alerts),
                received_at=time.time(),
            )
        )
        if not fresh:
            duplicates.inc()
            return _reply(0, duplicate=True)
        if notification.truncated_alerts:
            log.warning(
                "Alertmanager left out %d alerts of group %s", notification.truncated_alerts, notification.group_key
            )
        convert = functools.partial(_alerts_of, notification, limits.annotation_max_length)
        alerts = await asyncio.to_thread(convert) if large else convert()
        try:
            await feed.submit(alerts)
        except AlertFeedClosedError as exc:
            raise HTTPException(503, "the engine's pipeline stopped") from exc
        accepted.inc()
        return _reply(len(alerts), duplicate=False)


def _alerts_of(notification: NotificationIn, annotation_max_length: int) -> list[Alert]:
    return [alert.to_alert(annotation_max_length) for alert in notification.alerts]


def _reply(accepted: int, *, duplicate: bool) -> Response:
    # Built directly (the route still declares NotificationOut for its schema): Alertmanager ignores the body, and
    # response-model serialisation would cost this hot endpoint more than the rest of the reply.
    return Response(orjson.dumps({"accepted": accepted, "duplicate": duplicate}), media_type="application/json")
