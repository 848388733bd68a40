"""Metric samples from Kafka topics, consumed in a consumer group: the ``SampleSource`` of a Kafka-driven engine.

Records are fetched in large batches and decoded into one batch of samples for the pipeline, so detection runs on
its vectorised path. A record that does not decode or validate goes to the dead-letter topic with the reason and
its original bytes, and consumption goes on. Partition order is kept, and the message key is the series key, so
each series' samples arrive in order.

Offsets are committed by hand, in batch order, once the pipeline acknowledges a batch (its incident changes stored,
its events published: ``acknowledge``, the pipeline's ``BatchAcknowledger``) and the ``before_commit`` hook (the
publisher's flush) has returned: input is at-least-once, never lost. When partitions are revoked (a rebalance), the
batches in flight are given a moment to finish and their offsets are committed before the partitions move on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry, Counter

from engine.adapters.kafka.schema import InvalidMessageError, decode_samples
from engine.domain.events import MetricSample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KafkaSourceConfig:
    bootstrap_servers: str
    topics: tuple[str, ...]
    group_id: str
    dead_letter_topic: str
    # Most records taken per fetch; one fetch becomes one pipeline batch.
    max_batch_records: int = 10_000
    fetch_timeout_ms: int = 200
    # Stop after this long without a record (None: run until cancelled); for bounded runs and tests.
    idle_stop_s: float | None = None
    client_id: str = "aiops-engine"
    # How long a rebalance waits for batches in flight before giving their partitions up uncommitted.
    revoke_wait_s: float = 30.0


@dataclass(eq=False)
class _InFlight:
    """A fetched batch the pipeline has not acknowledged yet, and the offsets that acknowledging it commits."""

    batch: Sequence[MetricSample]
    offsets: dict[TopicPartition, int]
    done: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class KafkaSourceMetrics:
    """Counters of what the source consumed and rejected, in the engine's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter("aiops_kafka_records", "Kafka records consumed", registry=registry)
        self.samples = Counter("aiops_kafka_samples", "metric samples decoded from Kafka records", registry=registry)
        self.dead_letters = Counter(
            "aiops_kafka_dead_letters",
            "Kafka records sent to the dead-letter topic, by kind of fault",
            ["kind"],
            registry=registry,
        )


class KafkaSampleSource:
    def __init__(
        self,
        config: KafkaSourceConfig,
        metrics: KafkaSourceMetrics,
        *,
        before_commit: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        if not config.topics:
            raise ValueError("at least one topic to consume is needed")
        if config.max_batch_records < 1:
            raise ValueError("max_batch_records must be positive")
        self._config = config
        self._metrics = metrics
        self._stopping = asyncio.Event()
        self._before_commit = before_commit
        self._in_flight: deque[_InFlight] = deque()
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None

    def stop(self) -> None:
        """End ``batches`` after the batch in hand (what a graceful shutdown calls)."""
        self._stopping.set()

    async def batches(self) -> AsyncIterator[Sequence[MetricSample]]:
        """Batches until stopped; the pipeline must be given this source as its acknowledger, or offsets are never
        committed and the end of the stream waits for acknowledgements forever."""
        config = self._config
        consumer = AIOKafkaConsumer(
            bootstrap_servers=config.bootstrap_servers,
            group_id=config.group_id,
            client_id=config.client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.max_batch_records,
        )
        consumer.subscribe(list(config.topics), listener=_Rebalance(self))
        dead_letters = AIOKafkaProducer(
            bootstrap_servers=config.bootstrap_servers,
            client_id=f"{config.client_id}-dead-letters",
            enable_idempotence=True,
        )
        await dead_letters.start()
        try:
            await consumer.start()
            self._consumer = consumer
            try:
                async for batch in self._consume(consumer, dead_letters):
                    yield batch
                # Done fetching: wait for the pipeline to finish what it holds, so that its offsets are committed.
                while self._in_flight:
                    await self._in_flight[-1].finished.wait()
            finally:
                self._consumer = None
                self._in_flight.clear()
                await consumer.stop()
        finally:
            await dead_letters.stop()

    async def _consume(
        self, consumer: AIOKafkaConsumer, dead_letters: AIOKafkaProducer
    ) -> AsyncIterator[list[MetricSample]]:
        config = self._config
        loop = asyncio.get_running_loop()
        last_record = loop.time()
        while not self._stopping.is_set():
            fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                timeout_ms=config.fetch_timeout_ms, max_records=config.max_batch_records
            )
            if not fetched:
                if config.idle_stop_s is not None and loop.time() - last_record >= config.idle_stop_s:
                    return
                continue
            last_record = loop.time()
            batch: list[MetricSample] = []
            commits: dict[TopicPartition, int] = {}
            for partition, records in fetched.items():
                for record in records:
                    try:
                        batch.extend(decode_samples(record.value, record.key))
                    except InvalidMessageError as fault:
                        await self._dead_letter(dead_letters, record, fault)
                commits[partition] = records[-1].offset + 1
                self._metrics.records.inc(len(records))
            self._metrics.samples.inc(len(batch))
            entry = _InFlight(batch, commits)
            self._in_flight.append(entry)
            if batch:
                yield batch
            else:
                # Only dead letters (already acknowledged by the broker): done, in its turn.
                await self.acknowledge(batch)

    async def acknowledge(self, batch: Sequence[MetricSample]) -> None:
        """The pipeline is done with ``batch``: commit the offsets of every finished batch up to the first one
        still in flight."""
        for entry in self._in_flight:
            if entry.batch is batch and not entry.done:
                entry.done = True
                break
        await self._commit_finished()

    async def _commit_finished(self) -> None:
        async with self._commit_lock:
            offsets: dict[TopicPartition, int] = {}
            finished = []
            while self._in_flight and self._in_flight[0].done:
                entry = self._in_flight.popleft()
                offsets.update(entry.offsets)
                finished.append(entry)
            if offsets:
                if self._before_commit is not None:
                    await self._before_commit()
                await self._commit(offsets)
            for entry in finished:
                entry.finished.set()

    async def _commit(self, offsets: dict[TopicPartition, int]) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # The records are redelivered (to this or another member): at-least-once, nothing lost.
            log.warning("could not commit offsets %s: %s", offsets, exc)

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before ``revoked`` move to another member: let their batches in flight finish, then commit."""
        waiting = [entry for entry in self._in_flight if revoked & entry.offsets.keys()]
        if waiting:
            try:
                async with asyncio.timeout(self._config.revoke_wait_s):
                    for entry in waiting:
                        await entry.finished.wait()
            except TimeoutError:
                log.warning("batches of revoked partitions %s not finished in time; they will be redelivered", revoked)
        await self._commit_finished()

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: ConsumerRecord[Any, Any], fault: InvalidMessageError
    ) -> None:
        self._metrics.dead_letters.labels(fault.kind).inc()
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, fault.reason)
        headers = [
            ("aiops-error-kind", fault.kind.encode()),
            ("aiops-error", fault.reason.encode()),
            ("aiops-source-topic", record.topic.encode()),
            ("aiops-source-partition", str(record.partition).encode()),
            ("aiops-source-offset", str(record.offset).encode()),
        ]
        # The original bytes, untouched, so that the message can be inspected and replayed once fixed.
        await producer.send_and_wait(
            self._config.dead_letter_topic, value=record.value, key=record.key, headers=headers
        )


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSampleSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        return
