"""The composition root of the Kafka-driven engine (`aiops serve`): samples from a consumer group, events to output
topics; the store, detection, incidents and playbooks are wired as for the embedded engine in ``bootstrap``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.adapters.api.ingest_auth import IngestCredentials
from engine.adapters.kafka.formats import topic_formats
from engine.adapters.kafka.schema import MessageLimits
from engine.adapters.kafka.sink import KafkaEventPublisher, KafkaTopics
from engine.adapters.kafka.source import Checkpointing, KafkaSampleSource, KafkaSourceConfig, KafkaSourceMetrics
from engine.app.bootstrap import EngineBase, label_limits, open_shared_parts
from engine.app.settings import Settings
from engine.app.summary import RunSummary
from engine.core.alert_feed import AlertFeed
from engine.core.checkpoints import SeriesStates
from engine.core.ports import PipelineObserver
from engine.domain.clock import Clock
from engine.domain.errors import ConfigurationError

# A verification no replica judged (none saw its series) is handed to a person this long after its deadline.
UNJUDGED_VERIFICATION_GRACE_S = 300.0


@dataclass
class KafkaEngine(EngineBase):
    """Everything one Kafka-driven engine process needs, wired."""

    source: KafkaSampleSource
    publisher: KafkaEventPublisher
    # Alertmanager's webhook feeds the same incidents (when webhook credentials are configured).
    alerts: AlertFeed | None = None
    ingest: IngestCredentials | None = None

    def _unjudged_grace_s(self) -> float | None:
        # Series are spread over the group's replicas, and event time follows the wall clock on a live stream.
        return UNJUDGED_VERIFICATION_GRACE_S

    def _api_extras(self) -> dict[str, Any]:
        return {"ingest": self.ingest, "alerts": self.alerts, "readiness": {"kafka": self.source.check_brokers}}

    async def run(self) -> None:
        """Consume until the source stops (``source.stop()``, its idle limit, or cancellation); then publish what
        is still queued."""
        await self.publisher.start()
        try:
            await self.pipeline.run()
        finally:
            await self.publisher.close()

    def status(self) -> dict[str, Any]:
        return {
            "source": "kafka",
            "topics": list(_topics(self.settings.kafka_topics)),
            "group": self.settings.kafka_group_id,
            "partitions": [f"{topic}:{partition}" for topic, partition in self.source.assigned()],
            **super().status(),
        }


def _topics(text: str) -> tuple[str, ...]:
    return tuple(topic.strip() for topic in text.split(",") if topic.strip())


def kafka_source_config(settings: Settings, *, idle_stop_s: float | None = None) -> KafkaSourceConfig:
    if not settings.kafka_bootstrap.strip():
        raise ConfigurationError("AIOPS_KAFKA_BOOTSTRAP is required to consume from Kafka (host:port,...)")
    topics = _topics(settings.kafka_topics)
    if not topics:
        raise ConfigurationError("AIOPS_KAFKA_TOPICS names no topic")
    return KafkaSourceConfig(
        bootstrap_servers=settings.kafka_bootstrap,
        topics=topics,
        group_id=settings.kafka_group_id,
        dead_letter_topic=settings.kafka_dead_letter_topic,
        max_batch_records=settings.kafka_max_batch,
        idle_stop_s=idle_stop_s,
        limits=MessageLimits(settings.kafka_max_message_bytes, label_limits(settings)),
        connect_limit_s=settings.kafka_connect_limit_s,
        formats=topic_formats(settings.kafka_topic_formats, topics),
    )


async def open_kafka_engine(
    settings: Settings,
    *,
    clock: Clock,
    summary: RunSummary | None = None,
    observers: Sequence[PipelineObserver] = (),
    idle_stop_s: float | None = None,
) -> KafkaEngine:
    """Check the settings and playbooks, failing fast; open the store; wire the Kafka source and publisher."""
    config = kafka_source_config(settings, idle_stop_s=idle_stop_s)
    ingest = IngestCredentials.parse(settings.ingest_bearer_sha256, settings.ingest_basic_auth)
    parts = await open_shared_parts(settings, clock=clock, summary=summary, sees_every_series=False)
    publisher = KafkaEventPublisher(
        settings.kafka_bootstrap,
        KafkaTopics(settings.kafka_anomaly_topic, settings.kafka_incident_topic, settings.kafka_action_topic),
        connect_limit_s=settings.kafka_connect_limit_s,
        rules=lambda: parts.incidents.rules,
    )
    # Offsets move only after the batch's incident changes are stored, its events are acknowledged and the state of
    # its series is checkpointed in the store (which other members restore it from when its partitions move).
    source = KafkaSampleSource(
        config,
        KafkaSourceMetrics(parts.metrics.registry),
        before_commit=publisher.flush,
        checkpointing=Checkpointing(parts.store, SeriesStates(parts.detection, parts.incidents)),
        series=parts.detection,
    )
    parts.detection.add_batch_listener(source.detected)
    alerts = AlertFeed()
    pipeline = parts.pipeline(source, [publisher, *observers], alerts=alerts, acknowledger=source, stream_clock=source)
    return KafkaEngine(
        **parts.engine_fields(settings, pipeline),
        source=source,
        publisher=publisher,
        alerts=alerts,
        ingest=ingest,
    )
