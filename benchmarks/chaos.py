"""Chaos trials of the scaled-out engine: do kills and outages make it act twice, lose a step, act without approval,
overrun a budget, undo a good action or lose an incident?

    python -m benchmarks.chaos [--trials 50] [--replicas 2] [--seed S] [--new-id-share 0.3] [--details FILE] [--json]

Needs PostgreSQL's binaries and the Kafka jars (``bash scripts/services/kafka.sh fetch``), which the run uses for a
PostgreSQL cluster and a broker of its own (it stops and freezes them), and a Kubernetes control plane
(``bash scripts/services/kubernetes.sh start``; its admin kubeconfig from AIOPS_TEST_KUBECONFIG or that script).

Each trial runs ``--replicas`` real ``aiops serve`` processes in one consumer group, in live mode, on a fresh topic,
database and namespace, while the scenario of ``benchmarks.chaos_scenario`` is streamed in real time. Meanwhile the
harness approves the step that needs approval through the HTTP API of a random live replica at a random moment,
SIGKILLs a random replica at a random moment (or at the moment a step is running, verifying, waiting for approval or
being approved, chosen at random) and restarts it after a few seconds under the same AIOPS_REPLICA_ID or a new one,
and restarts or freezes (SIGSTOP/SIGCONT) PostgreSQL or the broker for a few seconds. Once every step is settled,
the trial is compared (``benchmarks.chaos_truth``) with one uninterrupted run of the same scenario by a single
replica, made first.

It prints one JSON object with ``--json``: trials, duplicate_actions, lost_steps, unapproved_runs, budget_overruns,
undone_good_actions, lost_incidents (summed over the trials) and seconds. Progress and findings go to stderr and
``--details``: a trial is a finding when a count is nonzero, when a step ends differently from the uninterrupted run
(e.g. a failed verification left to a person instead of undone) or when a replica ends on its own (it is restarted);
each finding holds the trial's seed, the kills, restarts and outages with their moments, the ledger's rows, the
incidents of both runs and the changes the cluster saw. A seed fixes the harness's choices, not the timing of the
processes. The replicas act with the control plane's admin kubeconfig.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError
from kubernetes import client, config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from benchmarks.chaos_scenario import (
    APPROVE_BY_S,
    INITIAL_REPLICAS,
    MIN_LIVE_S,
    PARTITIONS,
    SERIES,
    STEP_S,
    WARMUP_POINTS,
    write_playbooks,
)
from benchmarks.chaos_truth import (
    UNFINISHED,
    Counts,
    DeploymentWatch,
    RunTruth,
    StoreTruth,
    cluster_truth,
    compare,
    read_store,
)
from benchmarks.services import REPO, PrivateBroker, PrivatePostgres, free_port, kafka_jars_fetched, private_postgres
from engine.adapters.api.auth import hash_secret
from engine.adapters.kafka.schema import encode_samples, series_key_bytes

KILL_PHASES = ("random", "running", "verifying", "awaiting-approval", "approving")
OUTAGES = ("postgres-restart", "postgres-freeze", "kafka-restart", "kafka-freeze")
# Chaos happens within the busy part of the live stream (the spikes are at 3-20 s).
CHAOS_FROM_S, CHAOS_UNTIL_S = 1.0, 20.0
# How long a trial waits for its steps to settle once the stream's minimum is over, beyond any lease that a killed
# replica left on a step (which another replica may take over only once it runs out).
SETTLE_S = 90.0
MAX_SETTLE_S = 300.0
SEND_TIMEOUT_S = 15.0
VIEWER, RESPONDER = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
TOKENS = f"chaos-viewer:viewer:{hash_secret(VIEWER)},chaos-responder:responder:{hash_secret(RESPONDER)}"


def log(message: str) -> None:
    print(f"[chaos {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Replica:
    slot: str
    replica_id: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    killed: bool = False
    # Its API has answered: the harness sends approvals only to replicas that serve.
    ready: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return not self.killed and self.process.poll() is None


@dataclass
class Services:
    postgres: PrivatePostgres
    broker: PrivateBroker
    kube: client.ApiClient
    kubeconfig: Path
    work: Path
    # The replicas' AIOPS_LOG_LEVEL (INFO shows their partition assignments, for a finding's evidence).
    engine_log_level: str = "WARNING"


@dataclass
class Trial:
    """One run of the scenario: its resources, replicas and what the harness did to it."""

    name: str
    services: Services
    database_url: str
    topic: str
    namespace: str
    playbooks: Path
    t0: float = 0.0
    replicas: dict[str, Replica] = field(default_factory=dict)
    approvals_sent: dict[str, float] = field(default_factory=dict)
    approved_via: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    live_done: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    restarts: int = 0
    # Replicas that ended on their own (not killed by the harness).
    exits: int = 0

    def offset(self) -> float:
        return round(time.time() - self.t0, 2)

    def event(self, kind: str, **details: Any) -> None:
        self.events.append({"kind": kind, "at_s": self.offset(), **details})
        log(f"{self.name} {self.offset():6.2f}s {kind} {json.dumps(details, default=str)}")

    def env(self, replica_id: str, port: int) -> dict[str, str]:
        topic = self.topic
        return {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")} | {
            "AIOPS_KAFKA_BOOTSTRAP": self.services.broker.bootstrap,
            "AIOPS_KAFKA_TOPICS": topic,
            "AIOPS_KAFKA_GROUP_ID": f"group-{topic}",
            "AIOPS_KAFKA_DEAD_LETTER_TOPIC": f"{topic}.dlq",
            "AIOPS_KAFKA_ANOMALY_TOPIC": f"{topic}.anomalies",
            "AIOPS_KAFKA_INCIDENT_TOPIC": f"{topic}.incidents",
            "AIOPS_KAFKA_ACTION_TOPIC": f"{topic}.actions",
            "AIOPS_DATABASE_URL": self.database_url,
            "AIOPS_PLAYBOOK_DIR": str(self.playbooks),
            "AIOPS_PLAYBOOK_RELOAD_S": "0",
            "AIOPS_MODE": "live",
            "AIOPS_KUBECONFIG": str(self.services.kubeconfig),
            "AIOPS_HTTP_PORT": str(port),
            "AIOPS_API_TOKENS": TOKENS,
            "AIOPS_REPLICA_ID": replica_id,
            "AIOPS_DETECTOR": "robust_zscore",
            "AIOPS_INCIDENT_MIN_SIGNALS": "1",
            "AIOPS_INCIDENT_RESOLVE_AFTER_S": "4",
            "AIOPS_LOG_LEVEL": self.services.engine_log_level,
        }

    def start(self, slot: str, replica_id: str) -> Replica:
        port = free_port()
        path = self.services.work / self.name / f"{slot}-{len(self.events)}-{replica_id}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-c", "from engine.app.cli import main; main()", "serve"],
                cwd=REPO,
                env=self.env(replica_id, port),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        replica = Replica(slot, replica_id, port, process, path)
        self.replicas[slot] = replica
        return replica

    def live(self) -> list[Replica]:
        return [replica for replica in self.replicas.values() if replica.alive()]

    def serving(self) -> list[Replica]:
        return [replica for replica in self.live() if replica.ready]


async def _partitions(replica: Replica) -> list[str] | None:
    try:
        async with httpx.AsyncClient(timeout=2, headers={"Authorization": f"Bearer {VIEWER}"}) as http:
            status = (await http.get(f"{replica.base}/api/v1/status")).json()
    except (httpx.HTTPError, ValueError):
        return None
    return list(status.get("partitions", []))


async def _until_assigned(trial: Trial, timeout_s: float = 90.0) -> None:
    """Until every live replica answers and holds a partition, and they hold every partition between them: the
    live part starts once the group is stable, so the uninterrupted start is not itself a rebalance."""
    deadline = time.monotonic() + timeout_s
    while True:
        for replica in trial.replicas.values():
            if replica.process.poll() is not None:
                raise RuntimeError(f"replica {replica.slot} exited: {replica.log.read_text()[-3000:]}")
        owned = [await _partitions(r) for r in trial.live()]
        for replica, answer in zip(trial.live(), owned, strict=True):
            replica.ready = answer is not None
        if all(o for o in owned) and sum(len(o or []) for o in owned) == PARTITIONS:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{trial.name}: the replicas did not share the partitions: {owned}")
        await asyncio.sleep(0.5)


# --- the cluster's side -------------------------------------------------------------------------------------------


def _prepare_namespace(api: client.ApiClient, namespace: str) -> None:
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    apps = client.AppsV1Api(api)
    for name, replicas in INITIAL_REPLICAS.items():
        labels = {"app": name}
        apps.create_namespaced_deployment(
            namespace,
            {
                "metadata": {"name": name, "labels": labels},
                "spec": {
                    "replicas": replicas,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [{"name": "server", "image": "model-server:1"}]},
                    },
                },
            },
        )


def _delete_namespace(api: client.ApiClient, namespace: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(namespace)
    except client.ApiException as exc:
        log(f"could not delete namespace {namespace}: {exc.status}")


# --- the data -----------------------------------------------------------------------------------------------------


async def _create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])
    finally:
        await admin.close()


class _Producer:
    """Sends the trial's records through broker restarts and freezes: a send that fails or hangs is sent again by a
    new producer (an idempotent producer can stay stuck across a restart of its broker). A record the broker had
    already taken may then arrive twice, as it can from any at-least-once producer."""

    def __init__(self, bootstrap: str) -> None:
        self._bootstrap = bootstrap
        self._producer: AIOKafkaProducer | None = None

    async def send(self, topic: str, value: bytes, key: bytes, partition: int) -> None:
        while True:
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    if self._producer is None:
                        producer = AIOKafkaProducer(bootstrap_servers=self._bootstrap, enable_idempotence=True)
                        await producer.start()
                        self._producer = producer
                    await self._producer.send_and_wait(topic, value=value, key=key, partition=partition)
                return
            except (TimeoutError, KafkaError) as exc:
                log(f"produce to {topic} failed ({type(exc).__name__}); sending again with a new producer")
                await self.close()
                await asyncio.sleep(0.5)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await producer.stop()
            except (TimeoutError, KafkaError):
                pass  # its broker is away; the connection goes with the object


async def _send(producer: _Producer, trial: Trial, offsets: range) -> None:
    """The points at ``offsets`` of every series, each series on its own partition."""
    for series in SERIES:
        points = [(trial.t0 + k * STEP_S, series.value(k)) for k in offsets]
        key = series.key(trial.namespace)
        await producer.send(trial.topic, encode_samples(key, points), series_key_bytes(key), series.partition)


async def _stream(trial: Trial) -> None:
    """The warm-up history at once, then one point a second per series (stamped with the moment it is due) until
    the trial is finished, at least MIN_LIVE_S seconds."""
    producer = _Producer(trial.services.broker.bootstrap)
    try:
        await _send(producer, trial, range(-WARMUP_POINTS, 0))
        k = 0
        while k < MIN_LIVE_S or not trial.finished.is_set():
            await asyncio.sleep(max(0.0, trial.t0 + k * STEP_S - time.time()))
            await _send(producer, trial, range(k, k + 1))
            k += 1
            if k == MIN_LIVE_S:
                trial.live_done.set()
    finally:
        await producer.close()


# --- the ledger, read by the harness ------------------------------------------------------------------------------


class LedgerPoll:
    """Quick reads of the steps' statuses and leases; None while the database does not answer."""

    def __init__(self, database_url: str) -> None:
        self._engine: AsyncEngine = create_async_engine(
            database_url, connect_args={"timeout": 2, "command_timeout": 2}, pool_pre_ping=True
        )

    async def rows(self) -> list[tuple[str, str, str | None, float | None, str]] | None:
        try:
            async with asyncio.timeout(3), self._engine.connect() as connection:
                result = await connection.execute(
                    text("SELECT id, status, lease_owner, lease_until, target FROM actions")
                )
                return [(str(i), str(s), o, u, str(t)) for i, s, o, u, t in result]
        except Exception:  # the database is down or frozen (the point of a trial): not known now
            return None

    async def close(self) -> None:
        await self._engine.dispose()


# --- what the harness does during a trial -------------------------------------------------------------------------


async def _approve(trial: Trial, rng: random.Random, delay: Callable[[], float]) -> None:
    """Approve every step that waits for approval, each after ``delay()`` seconds (by APPROVE_BY_S at the latest),
    through a random live replica."""
    scheduled: dict[str, float] = {}
    done: set[str] = set()
    while not trial.finished.is_set():
        serving = trial.serving()
        if serving:
            replica = rng.choice(serving)
            try:
                async with httpx.AsyncClient(timeout=3, headers={"Authorization": f"Bearer {VIEWER}"}) as http:
                    waiting = (await http.get(f"{replica.base}/api/v1/approvals")).json()
                for item in waiting if isinstance(waiting, list) else []:
                    # Never later than APPROVE_BY_S, even when outages kept the step out of sight until then.
                    due = min(time.time() + delay(), trial.t0 + APPROVE_BY_S)
                    scheduled.setdefault(str(item["id"]), due)
            except (httpx.HTTPError, ValueError, KeyError):
                pass
        for step_id, due in sorted(scheduled.items()):
            if step_id in done or time.time() < due:
                continue
            if await _approve_one(trial, rng, step_id):
                done.add(step_id)
        await asyncio.sleep(0.5)


async def _approve_one(trial: Trial, rng: random.Random, step_id: str) -> bool:
    """One approval sent to a random serving replica; True once the step is no longer waiting. The moment the first
    approval reached a replica is the moment from which the step may run."""
    serving = trial.serving()
    if not serving:
        return False
    replica = rng.choice(serving)
    sent = time.time()
    trial.approved_via.append(replica.slot)
    trial.event("approve", step=step_id, via=replica.slot, replica_id=replica.replica_id)
    try:
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {RESPONDER}"}) as http:
            response = await http.post(f"{replica.base}/api/v1/approvals/{step_id}/approve", json={"comment": "chaos"})
    except httpx.ConnectError as exc:  # it never reached the replica
        trial.event("approve-failed", step=step_id, error=type(exc).__name__)
        return False
    except httpx.HTTPError as exc:  # it may have reached the replica, which may have acted on it
        trial.approvals_sent.setdefault(step_id, sent)
        trial.event("approve-failed", step=step_id, error=type(exc).__name__)
        return False
    trial.approvals_sent.setdefault(step_id, sent)
    trial.event("approve-answer", step=step_id, status=response.status_code, body=response.text[:300])
    return response.status_code in (200, 409)


async def _kill(trial: Trial, rng: random.Random, ledger: LedgerPoll, new_id_share: float) -> None:
    phase = rng.choice(KILL_PHASES)
    until = trial.t0 + CHAOS_UNTIL_S
    random_at = trial.t0 + rng.uniform(CHAOS_FROM_S, CHAOS_UNTIL_S)
    victim: Replica | None = None
    seen: list[tuple[str, str, str | None, float | None, str]] | None = None
    approvals_before = len(trial.approved_via)
    while time.time() < until and victim is None:
        await asyncio.sleep(0.1)
        live = trial.live()
        if phase == "random":
            if time.time() >= random_at and live:
                victim = rng.choice(live)
        elif phase == "approving":
            if len(trial.approved_via) > approvals_before:
                target = trial.replicas.get(trial.approved_via[-1])
                await asyncio.sleep(rng.uniform(0.0, 0.3))
                victim = target if target is not None and target.alive() else None
                approvals_before = len(trial.approved_via)
        else:
            seen = await ledger.rows()
            hits = [row for row in seen or [] if row[1] == phase]
            if hits and live:
                owners = {r.replica_id: r for r in live}
                holder = owners.get(hits[0][2] or "")
                victim = holder if holder is not None else rng.choice(live)
    if victim is None:
        live = trial.live()
        if not live:
            return
        victim = rng.choice(live)
        phase = f"{phase} (not seen by {CHAOS_UNTIL_S:g}s: at the end)"
    victim.process.send_signal(signal.SIGKILL)
    victim.killed = True
    rows = await ledger.rows()
    trial.event(
        "kill",
        phase=phase,
        slot=victim.slot,
        replica_id=victim.replica_id,
        steps=[{"id": i, "status": s, "lease_owner": o, "target": t} for i, s, o, _, t in rows or []],
    )
    await asyncio.to_thread(victim.process.wait)
    await asyncio.sleep(rng.uniform(1.0, 4.0))
    same = rng.random() >= new_id_share
    trial.restarts += 1
    replica_id = victim.replica_id if same else f"{victim.slot}-{trial.name}-r{trial.restarts}"
    trial.start(victim.slot, replica_id)
    trial.event("restart", slot=victim.slot, replica_id=replica_id, same_id=same)


async def _outage(trial: Trial, rng: random.Random) -> None:
    kind = rng.choice(OUTAGES)
    at = trial.t0 + rng.uniform(CHAOS_FROM_S, CHAOS_UNTIL_S)
    hold = rng.uniform(1.0, 4.0)
    await asyncio.sleep(max(0.0, at - time.time()))
    postgres, broker = trial.services.postgres, trial.services.broker
    trial.event("outage", outage=kind, hold_s=round(hold, 2))
    if kind == "postgres-restart":
        await asyncio.to_thread(postgres.stop)
        await asyncio.sleep(hold)
        await asyncio.to_thread(postgres.start)
    elif kind == "postgres-freeze":
        postgres.freeze()
        await asyncio.sleep(hold)
        postgres.thaw()
    elif kind == "kafka-restart":
        await broker.stop()
        await asyncio.sleep(hold)
        await _start_broker(trial, broker)
    else:
        broker.freeze()
        await asyncio.sleep(hold)
        broker.thaw()
    trial.event("outage-over", outage=kind)


async def _start_broker(trial: Trial, broker: PrivateBroker, attempts: int = 3) -> None:
    """Start the broker again with its data; on a loaded machine a start can outlast kafka.sh's wait."""
    for attempt in range(1, attempts + 1):
        try:
            await broker.start(keep_data=True)
            return
        except RuntimeError as exc:
            trial.event("broker-start-failed", attempt=attempt, error=str(exc)[-500:])
            if attempt == attempts:
                raise
            await broker.stop()


async def _watch_exits(trial: Trial) -> None:
    """Marks replicas that answer as serving. A replica that ends on its own (not killed by the harness) is a
    finding; it is restarted like a killed one."""
    while not trial.finished.is_set():
        for replica in list(trial.replicas.values()):
            code = replica.process.poll()
            if code is not None and not replica.killed:
                replica.killed = True
                trial.exits += 1
                log_tail = await asyncio.to_thread(replica.log.read_text)
                trial.event("replica-exited", slot=replica.slot, returncode=code, log=log_tail[-1500:])
                trial.start(replica.slot, replica.replica_id)
            elif code is None and not replica.ready:
                replica.ready = await _partitions(replica) is not None
        await asyncio.sleep(0.5)


async def _lag(bootstrap: str, topic: str) -> int | None:
    """How many records of ``topic`` the trial's group has yet to commit; None while the broker does not answer."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=f"group-{topic}", enable_auto_commit=False, request_timeout_ms=5000
    )
    try:
        async with asyncio.timeout(10):
            await consumer.start()
            try:
                partitions = [TopicPartition(topic, p) for p in range(PARTITIONS)]
                ends = await consumer.end_offsets(partitions)
                committed = [await consumer.committed(tp) or 0 for tp in partitions]
            finally:
                await consumer.stop()
    except (TimeoutError, KafkaError):
        return None
    return sum(int(ends[tp]) - done for tp, done in zip(partitions, committed, strict=True))


async def _settled(trial: Trial, ledger: LedgerPoll) -> None:
    """Until the group has committed every record sent so far (so every incident change and the steps it called for
    are stored) and no step is unfinished, or the wait runs out: SETTLE_S past the live minimum, longer while a step
    is leased to a killed replica whose lease has yet to run out."""
    await trial.live_done.wait()
    started = time.time()
    while True:
        rows = await ledger.rows()
        if rows is not None:
            open_rows = [r for r in rows if r[1] in UNFINISHED]
            if not open_rows and await _lag(trial.services.broker.bootstrap, trial.topic) == 0:
                return
            leases = [r[3] for r in open_rows if r[3] is not None]
            limit = min(MAX_SETTLE_S, max([SETTLE_S, *(lease - started + 15.0 for lease in leases)]))
            if time.time() - started > limit:
                lag = await _lag(trial.services.broker.bootstrap, trial.topic)
                unfinished = [{"id": r[0], "status": r[1], "lease": r[2]} for r in open_rows]
                trial.event("settle-timeout", unfinished=unfinished, steps=len(rows), uncommitted_records=lag)
                return
        await asyncio.sleep(1.0)


async def _create_database(admin_url: str, name: str) -> str:
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def run_once(
    services: Services,
    name: str,
    *,
    replicas: int,
    rng: random.Random | None,
    new_id_share: float,
) -> tuple[RunTruth, Trial]:
    """One run of the scenario; with ``rng`` a chaos trial, without it the uninterrupted reference."""
    suffix = uuid.uuid4().hex[:8]
    namespace = f"aiops-chaos-{suffix}"
    topic = f"aiops-chaos-{suffix}.samples"
    await asyncio.to_thread(_prepare_namespace, services.kube, namespace)
    database_url = await _create_database(services.postgres.url, f"chaos_{suffix}")
    await _create_topic(services.broker.bootstrap, topic)
    playbooks = write_playbooks(services.work / name / "playbooks", namespace)
    trial = Trial(name, services, database_url, topic, namespace, playbooks)
    watcher = await asyncio.to_thread(DeploymentWatch, services.kube, namespace)
    ledger = LedgerPoll(database_url)
    try:
        for number in range(replicas):
            trial.start(f"r{number}", f"{name}-r{number}")
        await _until_assigned(trial)
        trial.t0 = float(int(time.time()) + 1)
        trial.event("live", namespace=namespace, topic=topic, replicas=replicas)
        async with asyncio.TaskGroup() as group:
            group.create_task(_stream(trial))
            group.create_task(_watch_exits(trial))
            if rng is None:
                group.create_task(_approve(trial, random.Random(0), lambda: 1.0))
            else:
                group.create_task(_approve(trial, rng, lambda: rng.uniform(0.5, 6.0)))
                chaos = [
                    group.create_task(_kill(trial, rng, ledger, new_id_share)),
                    group.create_task(_outage(trial, rng)),
                ]
                await asyncio.gather(*chaos)
            await _settled(trial, ledger)
            trial.finished.set()
        store = await read_store(database_url, trial.t0)
    finally:
        trial.finished.set()
        for replica in trial.replicas.values():
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGTERM)
        for replica in trial.replicas.values():
            try:
                await asyncio.to_thread(replica.process.wait, 20)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                await asyncio.to_thread(replica.process.wait)
        await asyncio.to_thread(watcher.stop)
        await ledger.close()
        await asyncio.to_thread(_delete_namespace, services.kube, namespace)
    for error in watcher.errors:
        trial.event("watch-error", error=error)
    truth = RunTruth(trial.t0, store, cluster_truth(watcher.versions), dict(trial.approvals_sent))
    return truth, trial


def _ledger_rows(store: StoreTruth) -> list[dict[str, Any]]:
    return [asdict(row) for row in sorted(store.steps, key=lambda r: r.requested_at)]


def _check_reference(reference: RunTruth) -> None:
    """The uninterrupted run must do what the scenario is built to exercise, or the comparison says nothing."""
    outcomes = sorted((row.deployment, row.status) for row in reference.store.steps)
    wanted = sorted(
        [("web", "succeeded"), ("web", "succeeded"), ("web", "skipped"), ("api", "undone"), ("batch", "succeeded")]
    )
    if outcomes != wanted:
        raise RuntimeError(
            f"the uninterrupted run's steps are {outcomes}, the scenario expects {wanted}: "
            f"{json.dumps(_ledger_rows(reference.store), default=str)}"
        )


def _kubeconfig(given: str | None) -> Path:
    if given:
        return Path(given)
    if os.environ.get("AIOPS_TEST_KUBECONFIG"):
        return Path(os.environ["AIOPS_TEST_KUBECONFIG"])
    printed = subprocess.run(
        ["bash", str(REPO / "scripts/services/kubernetes.sh"), "env"], capture_output=True, text=True, check=True
    ).stdout
    return Path(printed.strip().rsplit("=", 1)[-1])


async def run(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    started = time.monotonic()
    # A SIGTERM (a timeout, a CI runner) cancels the run, so that the private servers and replicas are stopped.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    log(f"seed {seed}, {args.trials} trial(s) of {args.replicas} replicas")
    if not kafka_jars_fetched():
        raise RuntimeError("the Kafka jars are not fetched (bash scripts/services/kafka.sh fetch)")
    kubeconfig = _kubeconfig(args.kubeconfig)
    work = Path(tempfile.mkdtemp(prefix="aiops-chaos-"))
    broker = PrivateBroker(work / "kafka")
    kube = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
    total = Counts()
    findings: list[dict[str, Any]] = []
    with private_postgres() as postgres:
        await broker.start()
        try:
            services = Services(postgres, broker, kube, kubeconfig, work, args.engine_log_level)
            reference, _ = await run_once(services, "reference", replicas=1, rng=None, new_id_share=0)
            _check_reference(reference)
            log(f"reference: {len(reference.store.incidents)} incidents, {len(reference.store.steps)} steps")
            for number in range(args.first_trial, args.first_trial + args.trials):
                trial_seed = seed * 1000 + number
                truth, trial = await run_once(
                    services,
                    f"trial{number}",
                    replicas=args.replicas,
                    rng=random.Random(trial_seed),
                    new_id_share=args.new_id_share,
                )
                comparison = compare(reference, truth)
                total = total + comparison.counts
                log(f"trial {number} (seed {trial_seed}): {json.dumps(asdict(comparison.counts))}")
                if comparison.counts.nonzero() or comparison.evidence["differing_outcomes"] or trial.exits:
                    finding = {
                        "trial": number,
                        "trial_seed": trial_seed,
                        "counts": asdict(comparison.counts),
                        "replicas_exited": trial.exits,
                        "evidence": comparison.evidence,
                        "t0": trial.t0,
                        "events": trial.events,
                        "ledger": _ledger_rows(truth.store),
                        "incidents": list(truth.store.incident_rows),
                        "reference_incidents": list(reference.store.incident_rows),
                        "cluster": [asdict(e) for e in truth.cluster.executions],
                        "logs": str(work / trial.name),
                    }
                    findings.append(finding)
                    print(json.dumps({"finding": finding}, default=str), file=sys.stderr, flush=True)
        finally:
            await broker.stop()
            kube.close()
    result = {"trials": args.trials, **asdict(total), "seconds": round(time.monotonic() - started, 1)}
    return result, {"seed": seed, "findings": findings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--replicas", type=int, default=2, choices=(2, 3))
    parser.add_argument("--seed", type=int, default=None, help="trial i uses seed * 1000 + i (default: random)")
    parser.add_argument(
        "--first-trial", type=int, default=0, help="number of the first trial (with --seed: replay a finding's trial)"
    )
    parser.add_argument(
        "--engine-log-level", default="WARNING", choices=("DEBUG", "INFO", "WARNING"), help="the replicas' log level"
    )
    parser.add_argument(
        "--new-id-share", type=float, default=0.3, help="share of restarts under a new AIOPS_REPLICA_ID"
    )
    parser.add_argument("--kubeconfig", default=None, help="admin kubeconfig (default: AIOPS_TEST_KUBECONFIG)")
    parser.add_argument("--details", default=None, help="write every finding with its evidence to this JSON file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    # The harness's own Kafka clients retry through the outages it causes; their connection errors are expected.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    result, details = asyncio.run(run(args))
    if args.details:
        Path(args.details).write_text(json.dumps(details, default=str, indent=2))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")


if __name__ == "__main__":
    main()
