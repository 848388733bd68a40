"""The store behind one interface for SQLite (embedded default) and, later, PostgreSQL.

Implements the core's ``IncidentStore`` and ``ActionLedger`` ports and the queries the API needs. The action
ledger's claim is an INSERT on the action's deterministic id, so the database itself guarantees that a request is
carried out at most once, even across processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import logging
import math
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import (
    Float,
    Integer,
    Select,
    String,
    Table,
    Update,
    and_,
    bindparam,
    event,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import StaticPool

from engine.adapters.store.migrate import upgrade_to_head
from engine.adapters.store.resilience import DEFAULT_OUTAGE_LIMIT_S, Patience, patient, shown_url
from engine.adapters.store.sql_ledger import SqlActionLedger, insert_planned
from engine.adapters.store.tables import (
    ActionRow,
    AlertNotificationRow,
    IncidentEventRow,
    IncidentRow,
    PartitionCheckpointRow,
    SeriesCheckpointRow,
    SignalPointRow,
    SignalSilenceRow,
)
from engine.core.checkpoints import PartitionCheckpoint, SeriesState, document_series
from engine.core.correlation import GROUP_PREFIX
from engine.core.incident_merge import Merge
from engine.core.playbooks.steps import PlannedStep
from engine.core.ports import Planning
from engine.core.signal_points import SignalPoint
from engine.core.silences import SignalSilence
from engine.domain.batches import parts
from engine.domain.errors import ConfigurationError, ConflictError, NotFoundError
from engine.domain.events import (
    ActionMode,
    ActionStatus,
    Incident,
    IncidentChange,
    IncidentChangeKind,
    IncidentState,
    SeriesKey,
    Severity,
)
from engine.domain.signal_documents import signal_documents, signals_of_documents
from engine.domain.views import ActionRecord, IncidentDetail, TimelineEntry

log = logging.getLogger(__name__)

# The width of series_checkpoints.series (tables.SeriesCheckpointRow).
_SERIES_KEY_LENGTH = 1024


@dataclass(frozen=True, slots=True)
class AlertNotification:
    """One webhook notification as received, under the digest of its content."""

    key: str
    group_key: str
    status: str
    alert_count: int
    received_at: float


POSTGRES_POOL_SIZE = 10
# A PostgreSQL server that does not answer (frozen, or its network gone) surfaces as an error after this long
# instead of holding the pipeline forever: opening a connection, and any one statement. Generous beside the
# engine's statements, which take milliseconds; the wait for a concurrent migration's lock is the longest.
POSTGRES_CONNECT_TIMEOUT_S = 5.0
POSTGRES_STATEMENT_TIMEOUT_S = 10.0


def _engine_for(url: str) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise ConfigurationError(f"cannot use database URL {shown_url(url)!r}: {exc}") from exc
    database = parsed.database or ""
    sqlite_file = parsed.get_backend_name() == "sqlite" and database not in ("", ":memory:")
    # Checked here rather than left to the driver, whose failure arrives from a background thread.
    if sqlite_file and not Path(database).parent.is_dir():
        raise ConfigurationError(
            f"cannot open database {shown_url(url)!r}: directory {Path(database).parent} does not exist"
        )
    try:
        # orjson reads the JSON columns (labels, timeline details) in a fraction of the standard library's time.
        options: dict[str, Any] = {"json_deserializer": orjson.loads}
        if url.startswith("sqlite") and ":memory:" in url:
            # One shared connection, otherwise every connection would see its own empty in-memory database.
            options |= {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif parsed.get_backend_name() == "postgresql":
            # Enough kept-open connections for the API's concurrent requests beside the pipeline: past the pool's
            # size, each extra connection was opened (with its TLS probe) and closed again per request.
            options["pool_size"] = POSTGRES_POOL_SIZE
            # A kept connection that the server closed meanwhile (a restart) is found out and replaced when taken
            # from the pool, rather than failing the statement that would have used it.
            options["pool_pre_ping"] = True
            options["connect_args"] = {
                "timeout": POSTGRES_CONNECT_TIMEOUT_S,
                "command_timeout": POSTGRES_STATEMENT_TIMEOUT_S,
            }
        engine = create_async_engine(url, **options)
        if sqlite_file:
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    except (SQLAlchemyError, ValueError, ImportError) as exc:
        raise ConfigurationError(f"cannot use database URL {shown_url(url)!r}: {exc}") from exc


def _sqlite_pragmas(connection: Any, _: object) -> None:
    """A SQLite file in write-ahead-log mode: readers (the API's lists) no longer wait for a writer (the pipeline,
    an acknowledgement), and commits skip the second fsync per transaction; a crashed process loses nothing
    committed (only a power cut can lose the last transactions)."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


# Statements of the API's hot paths, built once with bound parameters: building a statement and its cache key on
# every request cost more than the database's answer.
_INCIDENTS = cast(Table, IncidentRow.__table__)
_EVENTS = cast(Table, IncidentEventRow.__table__)


def _page_query(*, in_state: bool, before: bool, of_severity: bool = False, of_model: bool = False) -> Select[Any]:
    query = select(_INCIDENTS).order_by(_INCIDENTS.c.opened_at.desc(), _INCIDENTS.c.id.desc())
    if in_state:
        query = query.where(_INCIDENTS.c.state == bindparam("state", type_=String))
    if of_severity:
        query = query.where(_INCIDENTS.c.severity == bindparam("severity", type_=Integer))
    if of_model:
        # The opening series' label (json_extract on SQLite, ->> on PostgreSQL): the series of one incident belong
        # to one workload, so its opening series names the model.
        query = query.where(_INCIDENTS.c.series_labels["model"].as_string() == bindparam("model", type_=String))
    if before:
        query = query.where(
            tuple_(_INCIDENTS.c.opened_at, _INCIDENTS.c.id)
            < tuple_(bindparam("before_at", type_=Float), bindparam("before_id", type_=String))
        )
    return query.limit(bindparam("limit", type_=Integer)).offset(bindparam("offset", type_=Integer))


def _decision(*, resolves: bool) -> Update:
    moved = {"state": bindparam("new_state", type_=String), "state_since": bindparam("decided_at", type_=Float)}
    if resolves:
        moved["resolved_at"] = bindparam("decided_at", type_=Float)
    return (
        update(_INCIDENTS)
        .where(
            _INCIDENTS.c.id == bindparam("incident_id", type_=String),
            _INCIDENTS.c.state.in_(bindparam("allowed_from", expanding=True)),
        )
        .values(moved)
        .returning(*_INCIDENTS.columns)
    )


# Keyed by (filtered by state, after a cursor, filtered by severity, filtered by model).
_PAGES = {
    (in_state, before, of_severity, of_model): _page_query(
        in_state=in_state, before=before, of_severity=of_severity, of_model=of_model
    )
    for in_state, before, of_severity, of_model in itertools.product((False, True), repeat=4)
}
_MOVE = _decision(resolves=False)
_RESOLVE = _decision(resolves=True)
_STATE_OF = select(_INCIDENTS.c.state).where(_INCIDENTS.c.id == bindparam("incident_id", type_=String))
_ADD_EVENT = insert(_EVENTS)
# Incident ids a query looks up at once: well inside every supported database's limit on bound parameters.
_IDS_PER_QUERY = 500
# Rows of one INSERT of signal samples (four parameters each: well inside every database's limit).
_POINTS_PER_STATEMENT = 2_000
# A transaction-scoped lock on one correlation group (PostgreSQL; released at commit or rollback).
_LOCK_GROUP = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class SqlStore:
    def __init__(self, engine: AsyncEngine, patience: Patience | None = None) -> None:
        self._engine = engine
        # How the pipeline's calls wait out an outage of the database (``resilience``).
        self.patience = patience or Patience()
        self._postgres = engine.dialect.name == "postgresql"
        sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._sessions: async_sessionmaker[AsyncSession] | _TakingTurns = sessions
        self._turn: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        self._write_turn: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()
        if engine.dialect.name == "sqlite":
            # An in-memory SQLite database lives on one shared connection, on which two concurrent transactions
            # would commit or roll back each other's work: everything takes turns there. In a file, only writers
            # do: SQLite allows one at a time, and a writer that finds the file locked waits in SQLite's busy
            # handler, which sleeps in steps of up to 100 ms (the long tail of concurrent acknowledgements).
            in_memory = isinstance(engine.pool, StaticPool)
            self._sessions = _TakingTurns(sessions, reads_too=in_memory)
            self._write_turn = self._sessions.turn
            if in_memory:
                self._turn = self._sessions.turn
        sessions_now = self._sessions
        self.ledger = SqlActionLedger(sessions_now.begin, sessions_now, engine.dialect.name, self.patience)

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection for reads of one statement that build no mapped objects: a session's unit of work
        costs more than such a query itself. On PostgreSQL it runs outside a transaction: one statement sees one
        consistent snapshot anyway, and the BEGIN and ROLLBACK around it were two more round trips to the server."""
        async with self._turn, self._engine.connect() as connection:
            if self._engine.dialect.name == "postgresql":
                await connection.execution_options(isolation_level="AUTOCOMMIT")
            yield connection

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection in a transaction, for a write of a few statements on plain rows: cheaper than a
        session when nothing needs its unit of work."""
        async with self._write_turn, self._engine.begin() as connection:
            yield connection

    @classmethod
    async def open(cls, url: str, *, outage_limit_s: float = DEFAULT_OUTAGE_LIMIT_S) -> SqlStore:
        """Connect and migrate to the newest schema, waiting up to ``outage_limit_s`` for a database that cannot
        be reached yet (StoreUnavailableError past it; StoreRefusedError when it refuses the engine)."""
        engine = _engine_for(url)
        patience = Patience(outage_limit_s)
        try:
            await patience.call(lambda: upgrade_to_head(engine), "opening the store")
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise ConfigurationError(f"cannot open database {shown_url(url)!r}: {exc}") from exc
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine, patience)

    async def close(self) -> None:
        await self._engine.dispose()

    # -- IncidentStore ---------------------------------------------------------------------------------------

    async def apply_change(self, change: IncidentChange) -> None:
        await self.apply_changes([change])

    @patient("storing incident changes")
    async def apply_changes(
        self, changes: Sequence[IncidentChange], planned: Sequence[PlannedStep] = (), *, plan: Planning | None = None
    ) -> list[IncidentChange]:
        """Take the changes in (``engine.core.incident_merge``), store the incidents' new states, their timeline
        entries and the playbook steps they call for (in the action ledger), all in one transaction: a burst of
        anomalies (every series at once) commits once rather than once per incident. On PostgreSQL, the groups
        the changes touch are locked for the transaction, so that two replicas never open one group's incident
        twice. While the database cannot be reached, waits and tries again (changes and steps it already holds
        are not stored twice)."""
        if not changes and not planned:
            return []
        async with self._sessions.begin() as session:
            stored = await _apply(session, changes, lock_groups=self._postgres) if changes else []
            steps = [*planned, *(plan(stored) if plan is not None and stored else ())]
            if steps:
                at = max([change.at for change in stored] + [step.request.requested_at for step in steps])
                await insert_planned(session, steps, at=at, postgres=self._postgres)
        return stored

    @patient("reading incident states")
    async def resolved_among(self, incident_ids: Collection[str]) -> set[str]:
        ids = list(incident_ids)
        resolved: set[str] = set()
        async with self._reading() as connection:
            for part in parts(ids, _IDS_PER_QUERY):
                rows = await connection.execute(
                    select(_INCIDENTS.c.id).where(
                        _INCIDENTS.c.id.in_(part),
                        _INCIDENTS.c.state == IncidentState.RESOLVED.value,
                    )
                )
                resolved.update(row[0] for row in rows)
        return resolved

    @patient("storing signal samples")
    async def add_signal_points(self, points: Sequence[SignalPoint]) -> None:
        """Keep samples of incidents' signals, for the on-call page; one already kept (a replay) is left as it is."""
        if not points:
            return
        rows = [
            {"incident_id": incident_id, "series": series[:_SERIES_KEY_LENGTH], "at": at, "value": value}
            for incident_id, series, at, value in points
            if math.isfinite(value)
        ]
        statement = self._insert(SignalPointRow).on_conflict_do_nothing(index_elements=["incident_id", "series", "at"])
        async with self._writing() as connection:
            for part in parts(rows, _POINTS_PER_STATEMENT):
                await connection.execute(statement, part)

    @patient("reading signal samples")
    async def signal_points(self, incident_id: str) -> dict[str, list[tuple[float, float]]]:
        """The kept samples of each signal of the incident (by series text), in time order."""
        query = (
            select(SignalPointRow.series, SignalPointRow.at, SignalPointRow.value)
            .where(SignalPointRow.incident_id == incident_id)
            .order_by(SignalPointRow.series, SignalPointRow.at)
        )
        found: dict[str, list[tuple[float, float]]] = {}
        async with self._reading() as connection:
            for series, at, value in await connection.execute(query):
                found.setdefault(series, []).append((at, value))
        return found

    # -- decisions of people ---------------------------------------------------------------------------------

    async def decide_incident(
        self,
        incident_id: str,
        *,
        allowed_from: frozenset[IncidentState],
        to: IncidentState,
        kind: str,
        by: str,
        comment: str,
        at: float,
        planned: Sequence[PlannedStep] = (),
    ) -> Incident:
        """Move an incident to ``to`` if it is in one of ``allowed_from`` (atomically, so of two people acting at
        once exactly one wins), record the decision in its timeline and store the steps it calls for (PagerDuty's
        acknowledge or resolve event), all in one transaction."""
        parameters = {
            "incident_id": incident_id,
            "allowed_from": [state.value for state in allowed_from],
            "new_state": to.value,
            "decided_at": at,
        }
        async with self._writing() as connection:
            # The changed row comes back from the UPDATE itself: no second read of the incident.
            decision = _RESOLVE if to is IncidentState.RESOLVED else _MOVE
            changed = (await connection.execute(decision, parameters)).first()
            if changed is None:
                state = (await connection.execute(_STATE_OF, {"incident_id": incident_id})).scalar()
                if state is None:
                    raise NotFoundError(f"no incident {incident_id!r}")
                raise ConflictError(f"incident {incident_id} is {state}; cannot {kind.removesuffix('d')} it")
            await _add_event(connection, incident_id, at=at, kind=kind, detail=_by(by, comment))
            await insert_planned(connection, planned, at=at, postgres=self._postgres)
        return _incident_of_columns(changed)

    async def annotate_incident(
        self, incident_id: str, *, kind: str, by: str, comment: str, at: float, snoozed_until: float | None = None
    ) -> Incident:
        """Add a comment (or a snooze) to an incident's timeline without changing its state. A resolved incident
        cannot be snoozed (ConflictError)."""
        snoozing = kind == "snoozed"
        async with self._sessions.begin() as session:
            # Locked while snoozing, so that a resolution at the same moment is seen, not overwritten.
            row = await session.get(IncidentRow, incident_id, with_for_update=snoozing)
            if row is None:
                raise NotFoundError(f"no incident {incident_id!r}")
            detail = _by(by, comment)
            if snoozing:
                if row.state == IncidentState.RESOLVED.value:
                    raise ConflictError(f"incident {incident_id} is resolved; cannot snooze it")
                row.snoozed_until = snoozed_until
                detail["until"] = snoozed_until
            await _add_event(session, incident_id, at=at, kind=kind, detail=detail)
        return _incident(row)

    # -- alert notifications ---------------------------------------------------------------------------------

    async def record_alert_notifications(self, notifications: Sequence[AlertNotification]) -> None:
        """Keep received notifications in one transaction; one already kept (same digest) is left as it is."""
        if not notifications:
            return
        rows = [
            {
                "key": n.key,
                "received_at": n.received_at,
                "group_key": n.group_key,
                "status": n.status,
                "alert_count": n.alert_count,
            }
            for n in notifications
        ]
        table = cast(Table, AlertNotificationRow.__table__)
        if self._engine.dialect.name == "postgresql":
            statement: Any = postgresql_insert(table).on_conflict_do_nothing(index_elements=["key"])
        else:
            statement = sqlite_insert(table).on_conflict_do_nothing(index_elements=["key"])
        # One statement with many parameter sets, on the table rather than the mapped class: the ORM's bulk path
        # cost the webhook's event loop more than the database's work on its thread.
        async with self._writing() as connection:
            await connection.execute(statement, rows)

    async def recent_alert_notification_keys(self, *, since: float) -> list[str]:
        """Digests of the notifications received since ``since``, oldest first."""
        query = (
            select(AlertNotificationRow.key)
            .where(AlertNotificationRow.received_at >= since)
            .order_by(AlertNotificationRow.received_at)
        )
        async with self._sessions() as session:
            return list((await session.scalars(query)).all())

    # -- partition checkpoints (CheckpointStore) --------------------------------------------------------------

    @patient("saving checkpoints")
    async def save_checkpoints(self, group: str, checkpoints: Sequence[PartitionCheckpoint]) -> None:
        """Keep the partitions' positions and the given series states in one transaction; a checkpoint behind the
        position already kept (from a member that lost the partition meanwhile) is left out."""
        if not checkpoints:
            return
        keys = [(c.topic, c.partition) for c in checkpoints]
        kept_query = (
            select(PartitionCheckpointRow.topic, PartitionCheckpointRow.partition, PartitionCheckpointRow.next_offset)
            .where(PartitionCheckpointRow.group_id == group)
            .where(tuple_(PartitionCheckpointRow.topic, PartitionCheckpointRow.partition).in_(keys))
            # Locks the rows on PostgreSQL, so that two members' saves of one partition take turns.
            .with_for_update()
        )
        async with self._sessions.begin() as session:
            kept = {(topic, partition): offset for topic, partition, offset in await session.execute(kept_query)}
            current = [c for c in checkpoints if kept.get((c.topic, c.partition), -1) <= c.offset]
            if not current:
                return
            positions = self._insert(PartitionCheckpointRow)
            await session.execute(
                positions.on_conflict_do_update(
                    index_elements=["group_id", "topic", "partition"],
                    set_={"next_offset": positions.excluded.next_offset},
                ),
                [
                    {"group_id": group, "topic": c.topic, "partition": c.partition, "next_offset": c.offset}
                    for c in current
                ],
            )
            rows = [
                {
                    "group_id": group,
                    "topic": c.topic,
                    "partition": c.partition,
                    "series": _series_row_key(series),
                    "next_offset": c.offset,
                    "state": _state_text(state.document(series)),
                }
                for c in current
                for series, state in c.states.items()
            ]
            if rows:
                states = self._insert(SeriesCheckpointRow)
                await session.execute(
                    states.on_conflict_do_update(
                        index_elements=["group_id", "topic", "partition", "series"],
                        set_={"next_offset": states.excluded.next_offset, "state": states.excluded.state},
                    ),
                    rows,
                )

    @patient("loading checkpoints")
    async def load_checkpoints(self, group: str, partitions: Collection[tuple[str, int]]) -> list[PartitionCheckpoint]:
        """The kept position and series states of each of ``partitions`` that has a checkpoint."""
        if not partitions:
            return []
        keys = list(partitions)
        async with self._sessions() as session:
            positions = await session.execute(
                select(
                    PartitionCheckpointRow.topic, PartitionCheckpointRow.partition, PartitionCheckpointRow.next_offset
                )
                .where(PartitionCheckpointRow.group_id == group)
                .where(tuple_(PartitionCheckpointRow.topic, PartitionCheckpointRow.partition).in_(keys))
            )
            offsets = {(topic, partition): offset for topic, partition, offset in positions}
            rows = await session.execute(
                select(
                    SeriesCheckpointRow.topic,
                    SeriesCheckpointRow.partition,
                    SeriesCheckpointRow.series,
                    SeriesCheckpointRow.state,
                )
                .where(SeriesCheckpointRow.group_id == group)
                .where(tuple_(SeriesCheckpointRow.topic, SeriesCheckpointRow.partition).in_(keys))
            )
            states: dict[tuple[str, int], dict[SeriesKey, SeriesState]] = defaultdict(dict)
            for topic, partition, text, state_text in rows:
                document = json.loads(state_text)
                series = document_series(document)
                if series is None:
                    series = _unnamed_series(text)
                    # A row that names its series (saved since) is the newer state of the same series.
                    if series is None or series in states[topic, partition]:
                        continue
                state = SeriesState.from_document(series, document)
                if state is not None:
                    states[topic, partition][series] = state
        return [
            PartitionCheckpoint(topic, partition, offset, states.get((topic, partition), {}))
            for (topic, partition), offset in sorted(offsets.items())
        ]

    def _insert(self, table: type[PartitionCheckpointRow | SeriesCheckpointRow | SignalPointRow]) -> Any:
        """An INSERT that can turn into an update of the row already there (each dialect spells it its own way)."""
        if self._engine.dialect.name == "postgresql":
            return postgresql_insert(table)
        return sqlite_insert(table)

    # -- dead letters ----------------------------------------------------------------------------------------

    # -- signal silences ------------------------------------------------------------------------------------

    async def add_silence(self, silence: SignalSilence) -> None:
        async with self._sessions.begin() as session:
            session.add(
                SignalSilenceRow(
                    id=silence.id,
                    metric=silence.metric,
                    matchers=list(silence.matchers),
                    starts_at=silence.starts_at,
                    ends_at=silence.ends_at,
                    created_by=silence.created_by,
                    comment=silence.comment,
                )
            )

    async def end_silence(self, silence_id: str, *, at: float) -> SignalSilence:
        """End a silence now (NotFoundError if there is none by that id; ConflictError if it already ended)."""
        async with self._sessions.begin() as session:
            row = await session.get(SignalSilenceRow, silence_id)
            if row is None:
                raise NotFoundError(f"no silence {silence_id!r}")
            if row.ends_at <= at:
                raise ConflictError(f"silence {silence_id} has already ended")
            row.ends_at = at
            return _silence(row)

    async def active_silences(self, *, at: float) -> list[SignalSilence]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(SignalSilenceRow).where(SignalSilenceRow.ends_at > at).order_by(SignalSilenceRow.ends_at)
            )
            return [_silence(row) for row in rows]

    # -- queries ---------------------------------------------------------------------------------------------

    async def list_incidents(
        self,
        *,
        state: IncidentState | None = None,
        limit: int = 100,
        offset: int = 0,
        before: tuple[float, str] | None = None,
        severity: Severity | None = None,
        model: str | None = None,
    ) -> list[Incident]:
        """Newest first. ``before`` (opened_at, id) of the last incident of a page asks for the next page: a keyset
        page costs the same however deep it is, unlike ``offset``. ``severity`` and ``model`` (the ``model`` label of
        the series that opened the incident) keep only the incidents that match."""
        # Plain rows of the table, not ORM objects: a page is read once and never changed, and building and
        # tracking mapped instances was most of a page's cost.
        query = _PAGES[state is not None, before is not None, severity is not None, model is not None]
        parameters: dict[str, Any] = {"limit": limit, "offset": offset}
        if state is not None:
            parameters["state"] = state.value
        if severity is not None:
            parameters["severity"] = int(severity)
        if model is not None:
            parameters["model"] = model
        if before is not None:
            parameters["before_at"], parameters["before_id"] = before
        async with self._reading() as connection:
            rows = await connection.execute(query, parameters)
            return [_incident_of_columns(row) for row in rows]

    async def count_incidents_by_state(self) -> dict[IncidentState, int]:
        """How many incidents are in each state now (every state present, 0 where none): one grouped count that
        the state index answers, cheap enough to run every few seconds."""
        query = select(IncidentRow.state, func.count()).group_by(IncidentRow.state)
        async with self._sessions() as session:
            counted = {str(state): int(count) for state, count in await session.execute(query)}
        return {state: counted.get(state.value, 0) for state in IncidentState}

    async def get_incident(self, incident_id: str) -> IncidentDetail:
        async with self._sessions() as session:
            row = await session.get(IncidentRow, incident_id)
            if row is None:
                raise NotFoundError(f"no incident {incident_id!r}")
            events = await session.scalars(
                select(IncidentEventRow)
                .where(IncidentEventRow.incident_id == incident_id)
                .order_by(IncidentEventRow.at, IncidentEventRow.id)
            )
            timeline = tuple(TimelineEntry(e.at, e.kind, dict(e.detail)) for e in events)
            actions = await session.scalars(
                select(ActionRow).where(ActionRow.incident_id == incident_id).order_by(ActionRow.step)
            )
            return IncidentDetail(_incident(row), timeline, tuple(_action(a) for a in actions))

    async def list_actions(
        self, *, status: ActionStatus | None = None, limit: int = 100, offset: int = 0
    ) -> list[ActionRecord]:
        query = select(ActionRow).order_by(ActionRow.requested_at.desc(), ActionRow.id).limit(limit).offset(offset)
        if status is not None:
            query = query.where(ActionRow.status == status.value)
        async with self._sessions() as session:
            return [_action(row) for row in await session.scalars(query)]

    async def ping(self) -> None:
        """Raises if the database cannot be reached."""
        async with self._sessions() as session:
            await session.execute(select(1))


class _TakingTurns:
    """A session factory whose writing sessions (``begin``) run one at a time in this process, and with
    ``reads_too`` every session."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, reads_too: bool) -> None:
        self._sessions = sessions
        self._reads_too = reads_too
        self.turn = asyncio.Lock()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[AsyncSession]:
        async with self.turn if self._reads_too else contextlib.nullcontext(), self._sessions() as session:
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncSession]:
        async with self.turn, self._sessions.begin() as session:
            yield session


async def _apply(
    session: AsyncSession, changes: Sequence[IncidentChange], *, lock_groups: bool
) -> list[IncidentChange]:
    """A batch of incident changes, in order, inside the caller's transaction; returns them as stored. The
    incidents they name and the active incident of each fingerprint they touch are read in one query, new ones
    written in one statement and their timeline rows in another: a burst (a spike in every series at once, an alert
    storm) must not cost a round trip, nor a mapped object's bookkeeping, per incident. This runs on the event loop,
    between the database's answers."""
    ids = list(dict.fromkeys(change.incident.id for change in changes))
    fingerprints = list(dict.fromkeys(change.incident.fingerprint for change in changes))
    if lock_groups:
        # Replicas that read different series of one group take turns on it until they commit (in a fixed order,
        # so that two batches never wait on each other).
        for fingerprint in sorted(fp for fp in fingerprints if fp.startswith(GROUP_PREFIX)):
            await session.execute(_LOCK_GROUP, {"key": fingerprint})
    rows: dict[str, IncidentRow] = {}
    # One query per part of both lists (usually one in all): each round trip is on the path of every anomaly.
    for index in range(0, max(len(ids), len(fingerprints)), _IDS_PER_QUERY):
        id_part, fingerprint_part = ids[index : index + _IDS_PER_QUERY], fingerprints[index : index + _IDS_PER_QUERY]
        found = await session.scalars(
            select(IncidentRow).where(
                or_(
                    IncidentRow.id.in_(id_part),
                    and_(
                        IncidentRow.fingerprint.in_(fingerprint_part),
                        IncidentRow.state != IncidentState.RESOLVED.value,
                    ),
                )
            )
        )
        rows.update((row.id, row) for row in found)
    merge = Merge.of(_incident(row) for row in rows.values())
    stored = merge.apply(changes)
    opened = []
    for incident_id, incident in merge.changed.items():
        row = rows.get(incident_id)
        if row is None:
            opened.append(_incident_columns(incident))
            continue
        row.severity = int(incident.severity)
        row.last_signal_at = incident.last_signal_at
        row.signal_count = incident.signal_count
        row.peak_score = incident.peak_score
        row.signals = signal_documents(incident.signals)
        if incident.state is IncidentState.RESOLVED and row.state != IncidentState.RESOLVED.value:
            row.state = IncidentState.RESOLVED.value
            row.resolved_at = incident.resolved_at
            row.state_since = incident.state_since
    events = [
        {"incident_id": change.incident.id, "at": change.at, "kind": change.kind.value, "detail": _detail(change)}
        for change in stored
    ]
    # The timeline rows refer to their incidents: those are written first.
    if opened:
        await session.execute(insert(IncidentRow), opened)
    await session.flush()
    if events:
        await session.execute(_ADD_EVENT, events)
    return stored


def _detail(change: IncidentChange) -> dict[str, Any]:
    """What an incident change's timeline row says about it."""
    incident = change.incident
    detail: dict[str, Any] = {"state": incident.state.value, "severity": incident.severity.label}
    if change.kind is IncidentChangeKind.QUIETED:
        detail["quiet"] = [
            str(s.series) for s in incident.signals if s.quiet_at is not None and s.quiet_at >= change.at
        ]
    if change.signal is not None:
        detail |= {
            "series": str(change.signal.series),
            "value": change.signal.value,
            "score": change.signal.score,
            "detector": change.signal.detector,
            "signal_at": change.signal.timestamp,
        }
    if change.alert is not None:
        detail |= {"alert": change.alert.name, "alert_status": change.alert.status.value}
    return detail


async def _add_event(
    into: AsyncSession | AsyncConnection, incident_id: str, *, at: float, kind: str, detail: dict[str, Any]
) -> None:
    # A plain INSERT rather than a mapped object: an on-call decision adds one row, and the unit of work's flush
    # cost more than the rest of the decision.
    await into.execute(_ADD_EVENT, {"incident_id": incident_id, "at": at, "kind": kind, "detail": detail})


def _by(by: str, comment: str) -> dict[str, Any]:
    return {"by": by, "comment": comment} if comment else {"by": by}


def _incident_columns(incident: Incident) -> dict[str, Any]:
    """A new incident's row, as its columns."""
    return {
        "id": incident.id,
        "fingerprint": incident.fingerprint,
        "title": incident.title,
        "series_name": incident.series.name,
        "series_labels": incident.series.label_map,
        "severity": int(incident.severity),
        "state": incident.state.value,
        "opened_at": incident.opened_at,
        "last_signal_at": incident.last_signal_at,
        "signal_count": incident.signal_count,
        "peak_score": incident.peak_score,
        "resolved_at": incident.resolved_at,
        "snoozed_until": None,
        "state_since": incident.opened_at,
        "signals": signal_documents(incident.signals),
    }


def _silence(row: SignalSilenceRow) -> SignalSilence:
    return SignalSilence(
        id=row.id,
        metric=row.metric,
        matchers=tuple(row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
    )


_SEVERITIES = {severity.value: severity for severity in Severity}
_STATES = {state.value: state for state in IncidentState}


def _incident_of_columns(values: Sequence[Any]) -> Incident:
    """An incident from a plain row of the whole ``incidents`` table, its columns in the table's order. Unpacked by
    position: reading fourteen values by name from a row cost as much as the rest of building the incident, and a
    page builds fifty."""
    (
        incident_id,
        fingerprint,
        title,
        series_name,
        series_labels,
        severity,
        state,
        opened_at,
        last_signal_at,
        signal_count,
        peak_score,
        resolved_at,
        snoozed_until,
        state_since,
        signals,
    ) = values
    return Incident(
        id=incident_id,
        fingerprint=fingerprint,
        title=title,
        series=SeriesKey(series_name, tuple(sorted(series_labels.items()))),
        severity=_SEVERITIES[severity],
        state=_STATES[state],
        opened_at=opened_at,
        last_signal_at=last_signal_at,
        signal_count=signal_count,
        peak_score=peak_score,
        resolved_at=resolved_at,
        snoozed_until=snoozed_until,
        state_since=state_since if state_since is not None else opened_at,
        signals=signals_of_documents(signals),
    )


def _incident(row: IncidentRow) -> Incident:
    """An incident from its mapped object."""
    return _incident_of_columns([getattr(row, column.key) for column in _INCIDENTS.columns])


def _action(row: ActionRow) -> ActionRecord:
    return ActionRecord(
        id=row.id,
        incident_id=row.incident_id,
        playbook=row.playbook,
        step=row.step,
        action=row.action,
        params=dict(row.params),
        mode=ActionMode(row.mode),
        status=row.status,
        detail=row.detail,
        requested_at=row.requested_at,
        finished_at=row.finished_at,
        approval_due_at=row.approval_due_at,
        decided_by=row.decided_by,
        explanation=dict(row.explanation or {}),
    )


def _series_row_key(series: SeriesKey) -> str:
    """A series' key among its partition's checkpoint rows: its text, which differs for every series, unless that
    does not fit the column or holds a NUL (which PostgreSQL's text refuses); then a digest of the text, which no
    series' text equals (no metric name starts with "#"). The state document names the series either way."""
    text = str(series)
    if len(text) <= _SERIES_KEY_LENGTH and "\x00" not in text:
        return text
    return "#sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _unnamed_series(text: str) -> SeriesKey | None:
    """The series of a checkpoint row saved before state documents named their series, from the row's text; None
    (and a warning: the series starts afresh) where that text cannot be trusted. Label values were not escaped
    then, so a text with a backslash may read as another series than it was saved for."""
    if "\\" not in text:
        try:
            return SeriesKey.parse(text)
        except ValueError:
            pass
    log.warning("checkpointed state of series %r is left out: saved by an earlier version, its key is ambiguous", text)
    return None


def _state_text(document: dict[str, Any]) -> str:
    """A series state as JSON text: orjson's (several times faster; checkpoints write every live series), unless
    the document holds NaN or an infinity, which orjson would write as null: such a document does not read back
    equal, and the standard encoder, which keeps them, writes it."""
    text = orjson.dumps(document)
    if orjson.loads(text) != document:
        return json.dumps(document)
    return text.decode()
