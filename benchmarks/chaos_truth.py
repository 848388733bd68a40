"""What a chaos trial did, observed outside the engine, and the counts that compare it with an uninterrupted run.

Ground truth comes from three places the engine does not control: a watch on the trial's Deployments (every
version the API server stored: each change of ``spec.replicas`` and the change record the scale backend writes in
the same update), the harness's own log of the approvals it sent, and the data it generated (which series recover).
The ledger and incident rows are read from the database for what only they hold (which run a step belongs to, what
was admitted).

Steps and incidents of two runs are matched by what they are about rather than by id (ids contain event times,
which differ from trial to trial): the incident's series (without the namespace) and its first signal's offset from
the start of the live part, and for a step also its playbook and step number.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client, watch
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from benchmarks.chaos_scenario import (
    APPROVED_DEPLOYMENTS,
    BUDGET_RUNS,
    BY_DEPLOYMENT,
    INITIAL_REPLICAS,
    LATENCY_PLAYBOOK,
)
from engine.adapters.actions import change_history

UNFINISHED = frozenset({"pending", "running", "undoing", "awaiting-approval", "verifying"})
UNDO_SUFFIX = "/undo"


@dataclass(frozen=True)
class Version:
    """One stored version of a Deployment, as the watch saw it."""

    seen_at: float
    deployment: str
    replicas: int
    changes: tuple[change_history.Change, ...]


class DeploymentWatch:
    """Records every version of the Deployments in one namespace, in a thread, until ``stop``."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self._apps = client.AppsV1Api(api)
        self._namespace = namespace
        self.versions: list[Version] = []
        self.errors: list[str] = []
        self._stopped = threading.Event()
        listed = self._apps.list_namespaced_deployment(namespace)
        for item in listed.items:
            self._record(item)
        self._resource_version = listed.metadata.resource_version
        self._thread = threading.Thread(target=self._follow, name=f"watch-{namespace}", daemon=True)
        self._thread.start()

    def _record(self, item: Any) -> None:
        annotations = item.metadata.annotations or {}
        self.versions.append(
            Version(
                time.time(), item.metadata.name, int(item.spec.replicas), tuple(change_history.changes(annotations))
            )
        )

    def _follow(self) -> None:
        while not self._stopped.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(
                    self._apps.list_namespaced_deployment,
                    self._namespace,
                    resource_version=self._resource_version,
                    timeout_seconds=2,
                ):
                    if event["type"] == "ERROR":  # e.g. 410: the version is too old; a gap would hide changes
                        self.errors.append(f"watch of {self._namespace} broke: {event['raw_object']}")
                        return
                    item = event["object"]
                    self._resource_version = item.metadata.resource_version
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(item)
                    if self._stopped.is_set():
                        break
            except client.ApiException as exc:
                self.errors.append(f"watch of {self._namespace} broke: {exc.status} {exc.reason}")
                return
            finally:
                stream.stop()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=10)


@dataclass(frozen=True)
class Execution:
    """A change the backend made, by the key it recorded (a step id, or ``<id>/undo``)."""

    deployment: str
    key: str
    at: float
    delta: int


@dataclass
class ClusterTruth:
    executions: list[Execution] = field(default_factory=list)
    # Changes of spec.replicas that came with no new change record: a change made more than once under one key.
    unrecorded: list[tuple[str, int, int]] = field(default_factory=list)
    final_replicas: dict[str, int] = field(default_factory=dict)


def cluster_truth(versions: Sequence[Version]) -> ClusterTruth:
    truth = ClusterTruth()
    by_deployment: dict[str, list[Version]] = {}
    for version in versions:
        by_deployment.setdefault(version.deployment, []).append(version)
    for deployment, seen in by_deployment.items():
        keys: set[str] = set()
        replicas = INITIAL_REPLICAS[deployment]
        for version in seen:
            new = [change for change in version.changes if change.key not in keys]
            delta = version.replicas - replicas
            for change in new:
                before, after = change.before.get("replicas"), change.after.get("replicas")
                step = int(after) - int(before) if isinstance(after, int) and isinstance(before, int) else 0
                truth.executions.append(Execution(deployment, change.key, change.at, step))
                keys.add(change.key)
            if delta and not new:
                truth.unrecorded.append((deployment, replicas, version.replicas))
            replicas = version.replicas
        truth.final_replicas[deployment] = replicas
    return truth


@dataclass(frozen=True)
class StepRow:
    id: str
    incident: tuple[str, str, int]
    playbook: str
    step: int
    target: str
    status: str
    detail: str
    counts: bool
    requested_at: float
    decided_by: str | None
    lease_owner: str | None

    @property
    def deployment(self) -> str:
        return self.target.rsplit("/", 1)[-1]

    @property
    def key(self) -> tuple[tuple[str, str, int], str, int]:
        return (self.incident, self.playbook, self.step)


@dataclass(frozen=True)
class StoreTruth:
    incidents: frozenset[tuple[str, str, int]]
    steps: tuple[StepRow, ...]
    # Every incident as stored (key, state, signal count, offsets of its last signal and resolution), for evidence.
    incident_rows: tuple[dict[str, Any], ...] = ()


def incident_key(series_name: str, labels: Mapping[str, str], opened_at: float, t0: float) -> tuple[str, str, int]:
    return (series_name, labels.get("deployment", ""), round(opened_at - t0))


async def read_store(database_url: str, t0: float, *, timeout_s: float = 5.0) -> StoreTruth:
    """The incidents and the ledger's steps, read with a connection of the harness's own."""
    engine = create_async_engine(database_url, connect_args={"timeout": timeout_s, "command_timeout": timeout_s})
    try:
        async with engine.connect() as connection:
            stored = list(
                await connection.execute(
                    text(
                        "SELECT id, series_name, series_labels, opened_at, state, signal_count, last_signal_at,"
                        " resolved_at FROM incidents ORDER BY opened_at"
                    )
                )
            )
            incidents = {
                str(row.id): incident_key(row.series_name, row.series_labels, row.opened_at, t0) for row in stored
            }
            incident_rows = tuple(
                {
                    "key": incidents[str(row.id)],
                    "id": str(row.id),
                    "state": row.state,
                    "signal_count": row.signal_count,
                    "last_signal_s": round(row.last_signal_at - t0, 2),
                    "resolved_s": None if row.resolved_at is None else round(row.resolved_at - t0, 2),
                }
                for row in stored
            )
            rows = await connection.execute(
                text(
                    "SELECT id, incident_id, playbook, step, target, status, detail, counts, requested_at,"
                    " decided_by, lease_owner FROM actions"
                )
            )
            steps = tuple(
                StepRow(
                    str(row.id),
                    incidents.get(row.incident_id, ("?", row.incident_id, 0)),
                    str(row.playbook),
                    int(row.step),
                    str(row.target or ""),
                    str(row.status),
                    str(row.detail or ""),
                    bool(row.counts),
                    float(row.requested_at),
                    row.decided_by,
                    row.lease_owner,
                )
                for row in rows
            )
    finally:
        await engine.dispose()
    return StoreTruth(frozenset(incidents.values()), steps, incident_rows)


@dataclass(frozen=True)
class RunTruth:
    """Everything one run (the reference or a trial) left behind."""

    t0: float
    store: StoreTruth
    cluster: ClusterTruth
    # The first moment the harness sent an approval, by step id.
    approvals_sent: Mapping[str, float]


COUNTS = (
    "duplicate_actions",
    "lost_steps",
    "unapproved_runs",
    "budget_overruns",
    "undone_good_actions",
    "lost_incidents",
)


@dataclass(frozen=True)
class Counts:
    duplicate_actions: int = 0
    lost_steps: int = 0
    unapproved_runs: int = 0
    budget_overruns: int = 0
    undone_good_actions: int = 0
    lost_incidents: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(**{name: getattr(self, name) + getattr(other, name) for name in COUNTS})

    def nonzero(self) -> bool:
        return any(vars(self).values())


@dataclass(frozen=True)
class Comparison:
    counts: Counts
    # What each nonzero count is made of, and outcomes that differ from the reference without counting above.
    evidence: dict[str, list[Any]]


def _forward(executions: Iterable[Execution]) -> list[Execution]:
    return [e for e in executions if not e.key.endswith(UNDO_SUFFIX)]


def _duplicates(reference: RunTruth, trial: RunTruth) -> list[dict[str, Any]]:
    """A change of replicas with no change record of its own (one key applied twice), and scale steps on a
    deployment beyond those the uninterrupted run made (one spike acted on twice, under two step ids)."""
    found: list[dict[str, Any]] = [
        {"unrecorded_change": deployment, "from": before, "to": after}
        for deployment, before, after in trial.cluster.unrecorded
    ]
    made = _forward(trial.cluster.executions)
    reference_made = Counter(e.deployment for e in _forward(reference.cluster.executions))
    for deployment, count in Counter(e.deployment for e in made).items():
        keys = [e.key for e in made if e.deployment == deployment]
        found += [{"extra_change_on": deployment, "keys": keys}] * max(0, count - reference_made.get(deployment, 0))
    return found


def _lost_steps(reference: RunTruth, trial: RunTruth) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Steps the uninterrupted run finished that the trial never stored or left unfinished; and (not counted) the
    ones it finished differently."""
    chaos_steps = {row.key: row for row in trial.store.steps}
    lost, differing = [], []
    for row in reference.store.steps:
        if row.status in UNFINISHED:
            continue
        found = chaos_steps.get(row.key)
        if found is None or found.status in UNFINISHED:
            lost.append({"step": row.key, "reference": row.status, "trial": None if found is None else found.status})
        elif found.status != row.status:
            differing.append({"step": row.key, "reference": row.status, "trial": found.status, "detail": found.detail})
    return lost, differing


def _unapproved(trial: RunTruth) -> list[dict[str, Any]]:
    """Changes for a step that needs approval made before the harness sent one (or with none sent), and steps of
    that kind the ledger ran with no decision recorded."""
    found: list[dict[str, Any]] = []
    for execution in _forward(trial.cluster.executions):
        sent = trial.approvals_sent.get(execution.key)
        if execution.deployment in APPROVED_DEPLOYMENTS and (sent is None or execution.at < sent):
            found.append({"step": execution.key, "changed_at": execution.at, "approval_sent_at": sent})
    counted = {item["step"] for item in found}
    ran = ("succeeded", "verifying", "undone", "undoing", "running")
    found += [
        {"step": row.id, "ledger": row.status, "decided_by": None}
        for row in trial.store.steps
        if row.deployment in APPROVED_DEPLOYMENTS and row.status in ran and row.decided_by is None
        if row.id not in counted
    ]
    return found


def _budget_overruns(trial: RunTruth) -> list[dict[str, Any]]:
    """Runs of the budgeted playbook per target beyond its budget, as admitted in the ledger and as changed in the
    cluster (every trial fits in one budget window)."""
    steps_by_id = {row.id: row for row in trial.store.steps}
    admitted = Counter(row.deployment for row in trial.store.steps if row.playbook == LATENCY_PLAYBOOK and row.counts)
    changed: Counter[str] = Counter()
    for execution in _forward(trial.cluster.executions):
        row = steps_by_id.get(execution.key)
        if execution.deployment not in APPROVED_DEPLOYMENTS and (row is None or row.playbook == LATENCY_PLAYBOOK):
            changed[execution.deployment] += 1
    found = []
    for deployment in sorted({*admitted, *changed}):
        excess = max(admitted[deployment], changed[deployment]) - BUDGET_RUNS
        found += [{"deployment": deployment, "admitted": admitted[deployment], "changed": changed[deployment]}] * max(
            0, excess
        )
    return found


def _undone_good(trial: RunTruth) -> list[dict[str, Any]]:
    """Undos on a deployment whose series recovered within every verification window: from the cluster's change
    records, and undone steps of the ledger the cluster shows no undo for."""
    undos = [e for e in trial.cluster.executions if e.key.endswith(UNDO_SUFFIX)]
    found: list[dict[str, Any]] = [
        {"key": e.key, "deployment": e.deployment, "at": e.at} for e in undos if BY_DEPLOYMENT[e.deployment].recovers
    ]
    undone_ids = {e.key.removesuffix(UNDO_SUFFIX) for e in undos}
    found += [
        {"step": row.id, "deployment": row.deployment, "ledger": row.status}
        for row in trial.store.steps
        if row.status in ("undone", "undoing") and BY_DEPLOYMENT[row.deployment].recovers
        if row.id not in undone_ids
    ]
    return found


def compare(reference: RunTruth, trial: RunTruth) -> Comparison:
    lost, differing = _lost_steps(reference, trial)
    missing = sorted(reference.store.incidents - trial.store.incidents)
    evidence: dict[str, list[Any]] = {
        "duplicate_actions": _duplicates(reference, trial),
        "lost_steps": lost,
        "unapproved_runs": _unapproved(trial),
        "budget_overruns": _budget_overruns(trial),
        "undone_good_actions": _undone_good(trial),
        "lost_incidents": [{"incident": key} for key in missing],
        "differing_outcomes": differing,
        "extra_incidents": [{"incident": key} for key in sorted(trial.store.incidents - reference.store.incidents)],
    }
    counts = Counts(**{name: len(evidence[name]) for name in COUNTS})
    return Comparison(counts, evidence)
