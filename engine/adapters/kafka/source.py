"""Metric samples from Kafka topics, consumed in a consumer group: the ``SampleSource`` of a Kafka-driven engine.

Records are fetched in large batches and decoded into one batch of samples for the pipeline, so detection runs on
its vectorised path. A record that does not decode or validate goes to the dead-letter topic with the reason and
its original bytes, and consumption goes on. Each topic has its message format (``formats``): the engine's own
JSON carries one series a message, keyed by it, the other formats many series a message, keyed by what they come
from (a resource, a host); either way partition order is kept, so each series' samples arrive in order. What is
bounded goes the same way: a message past its size bound (sent on without its bytes, which the dead-letter topic may
not take, but with its position to find it by), a series breaking the label rules, and a new series that detection
has no room for (``series``, the engine's series bound; a message's other series are taken).

Offsets are committed by hand, in batch order, once the pipeline acknowledges a batch (its incident changes stored,
its events published: ``acknowledge``, the pipeline's ``BatchAcknowledger``) and the ``before_commit`` hook (the
publisher's flush) has returned: input is at-least-once, never lost. When partitions are revoked (a rebalance), the
batches in flight are given a moment to finish and their offsets are committed before the partitions move on.

With ``Checkpointing``, partitions move between members with their state. Before offsets are committed, the state
of the partitions' series as of those offsets (detector, threshold cooldown, live incident, pending signals) is saved
with the offsets in a ``CheckpointStore``; when a partition is assigned, its saved state is restored and consumption
goes on from the saved position, before any of its records is processed; when it is revoked, its series are forgotten
here after the final commit. Detection runs ahead of the incident stage, so a state is captured in two halves at the
same batch boundary: detection's right after detection finished the batch (``detected``), the incident stage's right
after that stage worked out the batch's changes (``processed``), before it takes a later batch. To keep the cost
proportionate, a capture takes only the series touched since the last one, and happens at most every
``checkpoint_interval_s`` while detection is ahead (offsets then wait for it), or whenever the pipeline has caught
up. A partition is paused while its checkpoint loads, so that none of its records is taken before its state is in.

A member that takes a partition over reads its backlog while its other partitions are current. Until the backlog
is read, the event time of the partition's series is how far it has been read (``stream_clock``, the pipeline's
``StreamClock``), not the newest time of the member's other partitions: otherwise a restored incident would be
resolved as quiet while its signals are still unread, and the backlog would open a second incident for one problem.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaConnectionError, KafkaError
from prometheus_client import CollectorRegistry, Counter, Gauge

from engine.adapters.kafka.formats import JSON, MessageDecoder, message_decoder
from engine.adapters.kafka.schema import TOO_LARGE, InvalidMessageError, MessageLimits, Run, SampleColumns
from engine.adapters.kafka.startup import start_when_reachable
from engine.core.checkpoints import CheckpointStore, PartitionCheckpoint, SeriesState, SeriesStates
from engine.core.detection import SERIES_LIMIT, DetectorSlotState, SeriesAdmission
from engine.domain.batches import SampleBatch
from engine.domain.events import MetricSample, SeriesKey
from engine.domain.limits import clip_text, quoted

log = logging.getLogger(__name__)
# A dead letter's reason is clipped to this many characters; its headers fit in this many bytes.
_MAX_REASON = 1024
_HEADER_ROOM = 16 * 1024
_DEFAULT_REQUEST_BYTES = 1024 * 1024


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
    # While detection is ahead of the incident stage, how often series state is captured (and offsets committed).
    checkpoint_interval_s: float = 1.0
    limits: MessageLimits = field(default_factory=MessageLimits)
    # How long the clients' first connection is tried while no broker answers (0: once).
    connect_limit_s: float = 0.0
    # The message format of each topic (``formats.FORMATS``); topics not named carry the engine's own JSON.
    formats: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Checkpointing:
    """Where partition checkpoints go, and the pipeline state they capture and restore."""

    store: CheckpointStore
    states: SeriesStates


@dataclass(eq=False)
class _InFlight:
    """A fetched batch the pipeline has not acknowledged yet, and the offsets that acknowledging it commits."""

    batch: Sequence[MetricSample]
    offsets: dict[TopicPartition, int]
    seq: int = 0
    # The series of each partition the batch holds.
    series: dict[TopicPartition, set[SeriesKey]] = field(default_factory=dict)
    done: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    # Detection's half of a checkpoint taken at the end of this batch, waiting for the incident stage's half.
    detection: dict[SeriesKey, DetectorSlotState] | None = None
    # Set on a checkpoint point: the states to save when this batch's offsets are committed (series touched since
    # the previous point). Offsets are committed up to the newest finished point only.
    states: dict[SeriesKey, SeriesState] | None = None
    # With checkpointing: how far in event time each assigned partition had been read by the end of this batch, for
    # those with records still unread (None: caught up).
    stream_times: dict[TopicPartition, float | None] = field(default_factory=dict)


class KafkaSourceMetrics:
    """Counters of what the source consumed and rejected, and how far it is behind, in the engine's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.records = Counter("aiops_kafka_records", "Kafka records consumed", registry=registry)
        self.samples = Counter("aiops_kafka_samples", "metric samples decoded from Kafka records", registry=registry)
        self.dead_letters = Counter(
            "aiops_kafka_dead_letters",
            "Kafka records sent to the dead-letter topic, by kind of fault",
            ["kind"],
            registry=registry,
        )
        # Records on the broker not fetched yet: the high-water mark minus the next offset this member reads.
        self.lag = Gauge(
            "aiops_kafka_consumer_lag",
            "Records behind the partition's high-water mark after the last fetch",
            ["topic", "partition"],
            registry=registry,
        )
        self._lagging: set[TopicPartition] = set()

    def set_lag(self, partition: TopicPartition, lag: int) -> None:
        self.lag.labels(partition.topic, str(partition.partition)).set(lag)
        self._lagging.add(partition)

    def keep_lag_of(self, assigned: set[TopicPartition]) -> None:
        """Drop the lag of partitions this member no longer owns (a rebalance moved them): their new owner reports
        it, and a frozen last value here would add to it."""
        for partition in self._lagging - assigned:
            self.lag.remove(partition.topic, str(partition.partition))
        self._lagging &= assigned


class KafkaSampleSource:
    def __init__(
        self,
        config: KafkaSourceConfig,
        metrics: KafkaSourceMetrics,
        *,
        before_commit: Callable[[], Awaitable[None]] | None = None,
        checkpointing: Checkpointing | None = None,
        series: SeriesAdmission | None = None,
    ) -> None:
        """``series`` (detection) admits new series within the engine's bound; refused ones are dead-lettered."""
        if not config.topics:
            raise ValueError("at least one topic to consume is needed")
        if config.max_batch_records < 1:
            raise ValueError("max_batch_records must be positive")
        self._config = config
        self._metrics = metrics
        # One decoder per topic: a format that rates counters keeps the previous point of its topic's series.
        self._decoders: dict[str, MessageDecoder] = {
            topic: message_decoder(config.formats.get(topic, JSON), config.limits) for topic in config.topics
        }
        self._stopping = asyncio.Event()
        self._before_commit = before_commit
        self._in_flight: deque[_InFlight] = deque()
        self._commit_lock = asyncio.Lock()
        self._consumer: AIOKafkaConsumer | None = None
        self._checkpointing = checkpointing
        self._series = series
        self._seq = 0
        # The newest batch detection has finished, and the series it touched since the last capture.
        self._detected_seq = -1
        self._dirty: set[SeriesKey] = set()
        self._captured_at = float("-inf")
        # Stopping or rebalancing: every finished batch is committed at once, whatever the interval.
        self._urgent = False
        # Which partition each series comes from, and the series of each assigned partition.
        self._partition_of: dict[SeriesKey, TopicPartition] = {}
        self._owned: dict[TopicPartition, set[SeriesKey]] = defaultdict(set)
        # A failure to restore assigned partitions (the rebalance listener's errors are only logged by aiokafka).
        self._failure: BaseException | None = None
        # Per assigned partition: the newest event time taken from it, and the next offset to take.
        self._read_to: dict[TopicPartition, float] = {}
        self._next_offset: dict[TopicPartition, int] = {}

    def assigned(self) -> list[tuple[str, int]]:
        """The (topic, partition) pairs this member consumes now."""
        consumer = self._consumer
        if consumer is None:
            return []
        return sorted((tp.topic, tp.partition) for tp in consumer.assignment())

    async def check_brokers(self) -> None:
        """Raises KafkaError unless a broker answers a metadata request now: the readiness check of a Kafka-fed
        engine. A consumer that is not running (not started yet, or stopped) has no broker to ask: not ready."""
        consumer = self._consumer
        if consumer is None:
            raise KafkaConnectionError("the consumer is not running")
        await consumer.topics()

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
            # Room for the largest message taken and the headers added to it (the producer's default is 1 MiB).
            max_request_size=max(config.limits.max_message_bytes + _HEADER_ROOM, _DEFAULT_REQUEST_BYTES),
        )
        limit_s = self._config.connect_limit_s
        await start_when_reachable(
            dead_letters.start, stop=dead_letters.stop, what="dead-letter producer", limit_s=limit_s
        )
        try:
            # Set before joining the group: the first assignment may come while ``start`` runs, and restoring it
            # needs the consumer.
            self._consumer = consumer
            await start_when_reachable(consumer.start, stop=consumer.stop, what="consumer", limit_s=limit_s)
            try:
                async for batch in self._consume(consumer, dead_letters):
                    yield batch
                # Done fetching: wait for the pipeline to finish what it holds, so that its offsets are committed.
                self._urgent = True
                await self._settle()
                while self._in_flight:
                    await self._in_flight[-1].finished.wait()
            finally:
                self._consumer = None
                self._in_flight.clear()
                await consumer.stop()
        finally:
            self._consumer = None
            await dead_letters.stop()

    async def _consume(
        self, consumer: AIOKafkaConsumer, dead_letters: AIOKafkaProducer
    ) -> AsyncIterator[Sequence[MetricSample]]:
        config = self._config
        loop = asyncio.get_running_loop()
        last_record = loop.time()
        while not self._stopping.is_set():
            fetched: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = await consumer.getmany(
                timeout_ms=config.fetch_timeout_ms, max_records=config.max_batch_records
            )
            if self._failure is not None:
                # Never process records of a partition whose state could not be restored.
                raise self._failure
            if not fetched:
                # Nothing new: what the pipeline has finished meanwhile is committed without waiting for the interval.
                await self._settle()
                if config.idle_stop_s is not None and loop.time() - last_record >= config.idle_stop_s:
                    return
                continue
            last_record = loop.time()
            # Columnar: a message's points stay one array (no object per sample), its series is kept once.
            columns = SampleColumns()
            commits: dict[TopicPartition, int] = {}
            series: dict[TopicPartition, set[SeriesKey]] = {}
            # Each partition's samples are one range of the batch's rows.
            rows: dict[TopicPartition, tuple[int, int]] = {}
            for partition, records in fetched.items():
                owned = series.setdefault(partition, set())
                first_row = len(columns)
                await self._take(partition.topic, records, columns, owned, dead_letters)
                rows[partition] = (first_row, len(columns))
                commits[partition] = records[-1].offset + 1
                self._metrics.records.inc(len(records))
                highwater = consumer.highwater(partition)
                if highwater is not None:
                    self._metrics.set_lag(partition, max(highwater - commits[partition], 0))
            self._metrics.keep_lag_of(consumer.assignment())
            batch = columns.batch()
            self._metrics.samples.inc(len(batch))
            self._seq += 1
            entry = _InFlight(batch, commits, self._seq, series)
            if self._checkpointing is not None:
                for partition, keys in series.items():
                    self._owned[partition] |= keys
                    self._partition_of.update(dict.fromkeys(keys, partition))
                entry.stream_times = self._stream_times(consumer, batch, rows, commits)
            self._in_flight.append(entry)
            if batch:
                yield batch
            else:
                # Only dead letters (already acknowledged by the broker): done, in its turn.
                await self.acknowledge(batch)

    async def _take(
        self,
        topic: str,
        records: list[ConsumerRecord[bytes, bytes]],
        columns: SampleColumns,
        owned: set[SeriesKey],
        dead_letters: AIOKafkaProducer,
    ) -> None:
        """Decode one partition's records into ``columns`` (their series into ``owned``); dead-letter the faulty."""
        decoded: list[tuple[ConsumerRecord[bytes, bytes], list[Run]]] = []
        decode = self._decoders[topic]
        limits = self._config.limits
        for record in records:
            try:
                # The engine's own JSON carries one series a message (its decoder checks the key); other formats many.
                decoded.append((record, decode(record.value, record.key, limits)))
            except InvalidMessageError as fault:
                await self._dead_letter(dead_letters, record, fault)
        # In partition order, so that which series are refused does not depend on hashing.
        refused = (
            self._series.admit(dict.fromkeys(key for _, runs in decoded for key, _ in runs)) if self._series else set()
        )
        for record, runs in decoded:
            left_out = [key for key, _ in runs if key in refused] if refused else []
            if left_out:
                # The message's other series are taken: the dead letter says which were not.
                await self._dead_letter(dead_letters, record, _series_refusal(left_out, len(runs)))
            for key, points in runs:
                if left_out and key in refused:
                    continue
                columns.append(key, points)
                owned.add(key)

    def _stream_times(
        self,
        consumer: AIOKafkaConsumer,
        batch: SampleBatch,
        rows: dict[TopicPartition, tuple[int, int]],
        commits: dict[TopicPartition, int],
    ) -> dict[TopicPartition, float | None]:
        """How far each assigned partition has been read, this batch included, if it still holds unread records."""
        for partition, (start, stop) in rows.items():
            if stop > start:
                newest = float(batch.timestamps[start:stop].max())
                self._read_to[partition] = max(self._read_to.get(partition, float("-inf")), newest)
        self._next_offset.update(commits)
        times: dict[TopicPartition, float | None] = {}
        for partition in consumer.assignment():
            highwater, next_offset = consumer.highwater(partition), self._next_offset.get(partition)
            behind = highwater is None or next_offset is None or next_offset < highwater
            times[partition] = self._read_to.get(partition, float("-inf")) if behind else None
        return times

    def stream_clock(self, batch: Sequence[MetricSample]) -> Callable[[SeriesKey], float | None]:
        """The ``StreamClock`` of the pipeline: for a series of a partition that still held unread records at the
        end of ``batch`` (one just taken over with its backlog), the newest event time read from that partition;
        None for the others. Without checkpointing a partition's series start afresh on takeover: always None."""
        entry = self._in_flight_entry(batch)
        if entry is None or not entry.stream_times:
            return _no_stream_time
        times, partition_of = entry.stream_times, self._partition_of

        def stream_time(series: SeriesKey) -> float | None:
            partition = partition_of.get(series)
            # A partition assigned after this batch was fetched has been read nowhere yet.
            return None if partition is None else times.get(partition, float("-inf"))

        return stream_time

    def detected(self, batch: Sequence[MetricSample]) -> None:
        """Detection has just finished ``batch`` (a ``DetectionService`` batch listener): its state is now exactly
        as of the end of this batch, the moment to capture detection's half of a checkpoint when one is due."""
        if self._checkpointing is None:
            return
        entry = self._in_flight_entry(batch)
        if entry is None:
            return
        self._detected_seq = entry.seq
        for keys in entry.series.values():
            self._dirty |= keys
        if asyncio.get_running_loop().time() - self._captured_at >= self._config.checkpoint_interval_s:
            self._capture_detection(entry)

    def _in_flight_entry(self, batch: Sequence[MetricSample]) -> _InFlight | None:
        return next((entry for entry in self._in_flight if entry.batch is batch), None)

    def _capture_detection(self, entry: _InFlight) -> None:
        assert self._checkpointing is not None
        entry.detection = self._checkpointing.states.capture_detection(self._dirty)
        self._dirty = set()
        self._captured_at = asyncio.get_running_loop().time()

    def processed(self, batch: Sequence[MetricSample]) -> None:
        """The incident stage has worked out ``batch`` and taken nothing newer: if detection's half of a checkpoint
        was captured at the end of this batch, the incident stage's half of the same boundary is taken now."""
        if self._checkpointing is None:
            return
        entry = self._in_flight_entry(batch)
        if entry is not None and entry.detection is not None:
            entry.states = self._checkpointing.states.capture(entry.detection)

    async def acknowledge(self, batch: Sequence[MetricSample]) -> None:
        """The pipeline is done with ``batch``: commit the offsets (and save the checkpoint) of every finished batch
        up to the newest checkpoint point before the first one still in flight."""
        for entry in self._in_flight:
            if entry.batch is batch and not entry.done:
                entry.done = True
                self._mark_point(entry)
                break
        await self._commit_finished()

    async def _settle(self) -> None:
        """Commit (and checkpoint) everything the pipeline has finished, now."""
        self._mark_point(None, force=True)
        await self._commit_finished()

    def _mark_point(self, acknowledged: _InFlight | None, *, force: bool = False) -> None:
        """Make checkpoint points of finished batches where the stages' state is known as of their end."""
        if self._checkpointing is None:
            if acknowledged is not None:
                acknowledged.states = {}
            return
        states = self._checkpointing.states
        last = None
        for entry in self._in_flight:
            if not entry.done:
                break
            last = entry
        due = force or self._urgent
        due = due or asyncio.get_running_loop().time() - self._captured_at >= self._config.checkpoint_interval_s
        if last is not None and last.states is None and self._detected_seq <= last.seq and due:
            # Every stage has finished ``last`` and taken nothing newer: their live state is the state as of its end.
            self._capture_detection(last)
            assert last.detection is not None
            last.states = states.capture(last.detection)

    async def _commit_finished(self) -> None:
        async with self._commit_lock:
            ready = 0
            for index, entry in enumerate(self._in_flight):
                if not entry.done:
                    break
                if entry.states is not None:
                    ready = index + 1
            finished = [self._in_flight.popleft() for _ in range(ready)]
            try:
                offsets: dict[TopicPartition, int] = {}
                states: dict[TopicPartition, dict[SeriesKey, SeriesState]] = defaultdict(dict)
                for entry in finished:
                    offsets.update(entry.offsets)
                    for series, state in (entry.states or {}).items():
                        partition = self._partition_of.get(series)
                        if partition is not None:
                            states[partition][series] = state
                if offsets:
                    if self._before_commit is not None:
                        await self._before_commit()
                    await self._commit(offsets, states)
            finally:
                for entry in finished:
                    entry.finished.set()

    async def _commit(
        self, offsets: dict[TopicPartition, int], states: dict[TopicPartition, dict[SeriesKey, SeriesState]]
    ) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        assigned = consumer.assignment()
        # A partition given up meanwhile belongs to another member now: neither its offset nor its state is ours.
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        if self._checkpointing is not None:
            # The state first: a crash between the two leaves the checkpoint ahead of the committed offset, and the
            # next owner goes on from the checkpoint's position.
            checkpoints = [
                PartitionCheckpoint(tp.topic, tp.partition, offset, states.get(tp, {}))
                for tp, offset in offsets.items()
            ]
            await self._checkpointing.store.save_checkpoints(self._config.group_id, checkpoints)
        try:
            await consumer.commit(offsets)
        except KafkaError as exc:
            # The records are redelivered (to this or another member): at-least-once, nothing lost.
            log.warning("could not commit offsets %s: %s", offsets, exc)

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Before ``revoked`` move to another member: let their batches in flight finish, then commit."""
        waiting = [entry for entry in self._in_flight if revoked & entry.offsets.keys()]
        self._urgent = True
        try:
            await self._settle()
            if waiting:
                try:
                    async with asyncio.timeout(self._config.revoke_wait_s):
                        for entry in waiting:
                            await entry.finished.wait()
                except TimeoutError:
                    log.warning(
                        "batches of revoked partitions %s not finished in time; they will be redelivered", revoked
                    )
            await self._settle()
        finally:
            self._urgent = False
        if self._checkpointing is not None:
            # Saved above; the next owner (maybe this member again) restores them from the checkpoint.
            gone: set[SeriesKey] = set()
            for partition in revoked:
                gone |= self._owned.pop(partition, set())
            self._checkpointing.states.forget(gone)
            self._dirty -= gone
            for partition in revoked:
                self._read_to.pop(partition, None)
                self._next_offset.pop(partition, None)
            for series in gone:
                self._partition_of.pop(series, None)

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Before any record of ``assigned`` is fetched: restore their series' state and go on from the position it
        was saved at."""
        consumer = self._consumer
        if self._checkpointing is None or consumer is None or not assigned:
            return
        # aiokafka lets ``getmany`` return records of the new assignment as soon as it is set, before this listener
        # has finished: paused until restored (pausing also drops what was fetched for them meanwhile), so that no
        # record is scored by a detector that knows nothing of its series, however long the load takes.
        consumer.pause(*assigned)
        try:
            kept = await self._checkpointing.store.load_checkpoints(
                self._config.group_id, [(tp.topic, tp.partition) for tp in assigned]
            )
        except Exception as exc:  # aiokafka would only log it and consume the partitions from scratch
            log.exception("could not load the checkpoints of %s", assigned)
            self._failure = exc
            return
        restored = 0
        for checkpoint in kept:
            partition = TopicPartition(checkpoint.topic, checkpoint.partition)
            if partition not in assigned:
                continue
            self._checkpointing.states.restore(checkpoint.states)
            self._owned[partition] |= set(checkpoint.states)
            self._partition_of.update(dict.fromkeys(checkpoint.states, partition))
            # Every record before the saved position is in the restored state and its effects are stored.
            consumer.seek(partition, checkpoint.offset)
            self._next_offset[partition] = checkpoint.offset
            restored += len(checkpoint.states)
        # Those without a checkpoint go on from the group's committed offset, with no state.
        consumer.resume(*(assigned & consumer.assignment()))
        log.info("restored %d series of %d assigned partitions from their checkpoints", restored, len(assigned))

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: ConsumerRecord[Any, Any], fault: InvalidMessageError
    ) -> None:
        self._metrics.dead_letters.labels(fault.kind).inc()
        log.warning("dead-lettering %s[%d]@%d: %s", record.topic, record.partition, record.offset, fault.reason)
        headers = [
            ("aiops-error-kind", fault.kind.encode()),
            ("aiops-error", clip_text(fault.reason, _MAX_REASON).encode()),
            ("aiops-source-topic", record.topic.encode()),
            ("aiops-source-partition", str(record.partition).encode()),
            ("aiops-source-offset", str(record.offset).encode()),
        ]
        value, key = record.value, record.key
        if fault.kind == TOO_LARGE:
            # Too large to pass on (the dead-letter topic would likely refuse it too), and a record needs a key or a
            # value: an empty value, with headers that say where the original is.
            headers.append(("aiops-source-bytes", str(len(value or b"") + len(key or b"")).encode()))
            value, key = b"", None
        # The original bytes, untouched, so that the message can be inspected and replayed once fixed.
        await producer.send_and_wait(self._config.dead_letter_topic, value=value, key=key, headers=headers)


def _series_refusal(left_out: list[SeriesKey], carried: int) -> InvalidMessageError:
    first = quoted(str(left_out[0]))
    if carried == 1:
        reason = f"new series {first}: the engine keeps no more series (AIOPS_MAX_SERIES)"
    else:
        reason = (
            f"{len(left_out)} of the message's {carried} series are new and were left out (first: {first}): the "
            "engine keeps no more series (AIOPS_MAX_SERIES); its other series were taken"
        )
    return InvalidMessageError(SERIES_LIMIT, reason)


def _no_stream_time(series: SeriesKey) -> float | None:
    return None


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSampleSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._source.partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._source.partitions_assigned(assigned)
