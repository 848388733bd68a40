"""The Alertmanager webhook receiver (``POST /api/v1/alerts``, payload version 4).

A notification is validated and recognised by the SHA-256 of its body: only a first delivery is handed to the
pipeline's alert feed, a redelivery (same bytes: Alertmanager's retries) is answered as a duplicate. The
``NotificationWriter`` remembers the digests and keeps them in the store (see there why it writes behind).
The incident stage is idempotent too, for the same alert repeated in a later notification of its group.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import datetime
from typing import Literal

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.adapters.api.ingest_auth import IngestCredentials, ingest_guard
from engine.adapters.api.notification_writer import NotificationWriter
from engine.adapters.store.sql_store import AlertNotification, SqlStore
from engine.adapters.telemetry import IngestMetrics
from engine.core.alert_feed import AlertFeed, AlertFeedClosedError
from engine.domain.events import Alert, AlertStatus, Severity

log = logging.getLogger(__name__)

_Labels = dict[str, str]


class AlertIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    status: Literal["firing", "resolved"]
    labels: _Labels = Field(max_length=128)
    annotations: _Labels = Field(default_factory=dict, max_length=128)
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    generator_url: str = Field(default="", alias="generatorURL", max_length=4096)
    fingerprint: str = Field(default="", max_length=128)

    def to_alert(self) -> Alert:
        # Sorted pairs as freeze_labels makes them, without its conversions: validation already made them str.
        labels = tuple(sorted(self.labels.items()))
        # Older senders leave the fingerprint out; the label set identifies the alert just as well.
        fingerprint = self.fingerprint or hashlib.sha256(repr(labels).encode()).hexdigest()[:16]
        ends_at = self.ends_at.timestamp() if self.ends_at is not None and self.ends_at.year > 1 else None
        return Alert(
            name=self.labels.get("alertname", "unnamed"),
            fingerprint=fingerprint,
            status=AlertStatus(self.status),
            labels=labels,
            starts_at=self.starts_at.timestamp(),
            ends_at=ends_at if self.status == "resolved" else None,
            severity=Severity.of_alert_label(self.labels.get("severity", "")),
            annotations=tuple(sorted(self.annotations.items())),
        )


class NotificationIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    version: Literal["4"]
    group_key: str = Field(alias="groupKey", max_length=4096)
    truncated_alerts: int = Field(default=0, alias="truncatedAlerts", ge=0)
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=512)
    group_labels: _Labels = Field(default_factory=dict, alias="groupLabels")
    common_labels: _Labels = Field(default_factory=dict, alias="commonLabels")
    common_annotations: _Labels = Field(default_factory=dict, alias="commonAnnotations")
    external_url: str = Field(default="", alias="externalURL", max_length=4096)
    alerts: list[AlertIn] = Field(max_length=10_000)


class NotificationOut(BaseModel):
    accepted: int
    duplicate: bool


def alert_router(
    *, store: SqlStore, feed: AlertFeed, credentials: IngestCredentials, metrics: IngestMetrics
) -> APIRouter:
    router = APIRouter(tags=["ingest"])
    guard = ingest_guard(credentials, metrics, "alerts")
    accepted, duplicates = metrics.notifications.labels("accepted"), metrics.notifications.labels("duplicate")
    writer = NotificationWriter(store)

    @router.post(
        "/api/v1/alerts",
        response_model=NotificationOut,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": NotificationIn.model_json_schema(by_alias=True)}},
            }
        },
        responses={
            401: {"description": "missing or wrong credential"},
            422: {"description": "not a version-4 Alertmanager notification"},
            503: {"description": "the pipeline is not running; Alertmanager retries"},
        },
    )
    async def receive_alerts(request: Request) -> Response:
        """Alertmanager's webhook: firing alerts open incidents, resolved ones resolve them; redelivery is a no-op."""
        guard(request)
        # The raw body is parsed here rather than by FastAPI: validating JSON bytes directly is faster, and the
        # digest of exactly what Alertmanager sent is what recognises its retries.
        body = await request.body()
        try:
            notification = NotificationIn.model_validate_json(body)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
            ) from exc
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
        alerts = [alert.to_alert() for alert in notification.alerts]
        try:
            await feed.submit(alerts)
        except AlertFeedClosedError as exc:
            raise HTTPException(503, "the engine's pipeline stopped") from exc
        accepted.inc()
        return _reply(len(alerts), duplicate=False)

    return router


def _reply(accepted: int, *, duplicate: bool) -> Response:
    # Built directly (the route still declares NotificationOut for its schema): Alertmanager ignores the body, and
    # response-model serialisation would cost this hot endpoint more than the rest of the reply.
    return Response(orjson.dumps({"accepted": accepted, "duplicate": duplicate}), media_type="application/json")
