"""Publishes what the engine finds and does to Kafka topics as JSON: anomalies, incident changes and action
results, through an idempotent producer (no duplicates from the producer's own retries).

The pipeline tells its observers synchronously; this observer queues each event and one task sends them in order,
so the pipeline never waits on the broker except through ``flush``. Keys keep each subject's events in order on one
partition: the series key for anomalies, the incident id for incident changes and action results.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer

from engine.adapters.kafka.startup import start_when_reachable
from engine.core.correlation import NO_RULES, CorrelationRules
from engine.core.probable_cause import cause_documents
from engine.domain.events import ActionResult, Anomaly, Incident, IncidentChange, MetricSample


@dataclass(frozen=True)
class KafkaTopics:
    anomalies: str
    incidents: str
    actions: str


class KafkaEventPublisher:
    """A ``PipelineObserver`` that publishes events; ``start`` before the pipeline runs, ``close`` after."""

    def __init__(
        self,
        bootstrap_servers: str,
        topics: KafkaTopics,
        *,
        client_id: str = "aiops-engine",
        connect_limit_s: float = 0.0,
        rules: Callable[[], CorrelationRules] = lambda: NO_RULES,
    ) -> None:
        self._topics = topics
        # The correlation rules in force (they may be reloaded): they rank each incident's probable cause.
        self._rules = rules
        self._connect_limit_s = connect_limit_s
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id=f"{client_id}-events",
            enable_idempotence=True,
            linger_ms=5,
        )
        # An event to send, a flush to answer once everything before it is acknowledged, or None: the end.
        self._queue: asyncio.Queue[tuple[str, bytes, bytes] | asyncio.Future[None] | None] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self.published = 0

    async def start(self) -> None:
        """Connect, waiting up to ``connect_limit_s`` for a broker to answer."""
        await start_when_reachable(
            self._producer.start, stop=self._producer.stop, what="event publisher", limit_s=self._connect_limit_s
        )
        self._sender = asyncio.create_task(self._send_all(), name="kafka-events")

    async def close(self) -> None:
        """Send everything queued, wait for the broker's acknowledgements, then stop the producer."""
        try:
            if self._sender is not None:
                await self._queue.put(None)
                await self._sender
        finally:
            await self._producer.stop()

    async def flush(self) -> None:
        """Return once every event queued so far is acknowledged by the broker (what offsets wait for)."""
        if self._sender is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        await self._queue.put(done)
        # If the sender died, its error is the answer.
        await asyncio.wait({done, self._sender}, return_when=asyncio.FIRST_COMPLETED)
        if not done.done():
            self._sender.result()
        await done

    async def _send_all(self) -> None:
        pending: list[asyncio.Future[Any]] = []
        while (item := await self._queue.get()) is not None:
            if isinstance(item, asyncio.Future):
                await asyncio.gather(*pending)
                pending.clear()
                item.set_result(None)
                continue
            topic, key, value = item
            pending.append(await self._producer.send(topic, value=value, key=key))
            if self._queue.empty():
                # Acknowledged before idling: an error surfaces here rather than silently at shutdown.
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)

    def _put(self, topic: str, key: str, document: Mapping[str, Any]) -> None:
        self._queue.put_nowait((topic, key.encode(), orjson.dumps(document, default=_fallback)))
        self.published += 1

    def on_samples(self, samples: Sequence[MetricSample]) -> None:
        return

    def on_detection(self, samples: Sequence[MetricSample], seconds: float) -> None:
        return

    def on_anomalies(self, anomalies: Sequence[Anomaly]) -> None:
        for anomaly in anomalies:
            self._put(self._topics.anomalies, str(anomaly.series), anomaly_document(anomaly))

    def on_incident_change(self, change: IncidentChange) -> None:
        document = {
            "kind": change.kind.value,
            "at": change.at,
            "incident": incident_document(change.incident, self._rules()),
            "signal": anomaly_document(change.signal) if change.signal is not None else None,
        }
        self._put(self._topics.incidents, change.incident.id, document)

    def on_action(self, result: ActionResult) -> None:
        request = result.request
        document = {
            "request_id": request.id,
            "incident_id": request.incident_id,
            "playbook": request.playbook,
            "step": request.step,
            "action": request.action,
            "params": dict(request.params),
            "mode": request.mode.value,
            "status": result.status.value,
            "detail": result.detail,
            "finished_at": result.finished_at,
            "effects": dict(result.effects),
        }
        self._put(self._topics.actions, request.incident_id, document)


def anomaly_document(anomaly: Anomaly) -> dict[str, Any]:
    return {
        "series": str(anomaly.series),
        "name": anomaly.series.name,
        "labels": anomaly.series.label_map,
        "timestamp": anomaly.timestamp,
        "value": anomaly.value,
        "score": anomaly.score,
        "detector": anomaly.detector,
        "severity": anomaly.severity.label,
    }


def incident_document(incident: Incident, rules: CorrelationRules = NO_RULES) -> dict[str, Any]:
    return {
        "id": incident.id,
        "fingerprint": incident.fingerprint,
        "title": incident.title,
        "series": str(incident.series),
        "severity": incident.severity.label,
        "state": incident.state.value,
        "opened_at": incident.opened_at,
        "last_signal_at": incident.last_signal_at,
        "signal_count": incident.signal_count,
        "peak_score": incident.peak_score,
        "resolved_at": incident.resolved_at,
        # Ranked from the probable cause down, each signal with its reasons.
        "causes": cause_documents(incident.signals, rules),
    }


def _fallback(value: object) -> object:
    # Action params and effects may hold read-only mappings or tuples from YAML; anything else becomes its text.
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)
