"""The relational schema. Alembic migrations under ``migrations/`` create it; keep the two in step."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class IncidentRow(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_opened_at_id", "opened_at", "id"),
        Index("ix_incidents_state_opened_at_id", "state", "opened_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(512), index=True)
    title: Mapped[str] = mapped_column(Text)
    series_name: Mapped[str] = mapped_column(String(256))
    series_labels: Mapped[dict[str, str]] = mapped_column(JSON)
    severity: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32), index=True)
    opened_at: Mapped[float] = mapped_column(Float, index=True)
    last_signal_at: Mapped[float] = mapped_column(Float)
    signal_count: Mapped[int] = mapped_column(Integer)
    peak_score: Mapped[float] = mapped_column(Float)
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    snoozed_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    state_since: Mapped[float | None] = mapped_column(Float, nullable=True)
    # engine.domain.signal_documents, one per series (0012); NULL for incidents stored before.
    signals: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)


class SignalPointRow(Base):
    """Samples of an incident's signals, from the batch of their first anomaly to the incident's end (0013): what
    the on-call page draws. Bounded per signal by the pipeline (``engine.core.signal_points``)."""

    __tablename__ = "signal_points"

    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), primary_key=True)
    series: Mapped[str] = mapped_column(String(1024), primary_key=True)
    at: Mapped[float] = mapped_column(Float, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class IncidentEventRow(Base):
    __tablename__ = "incident_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    at: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class ActionRow(Base):
    __tablename__ = "actions"
    __table_args__ = (Index("ix_actions_counts_requested_at", "counts", "requested_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), index=True)
    playbook: Mapped[str] = mapped_column(String(128))
    step: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    mode: Mapped[str] = mapped_column(String(16))
    status: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    requested_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    approval_due_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    decided_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # The ledger's remediation state (0010): what a step needs to be carried out by any replica after any crash.
    approval_timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    target: Mapped[str | None] = mapped_column(String(512), nullable=True)
    namespace: Mapped[str | None] = mapped_column(String(256), nullable=True)
    # PlannedStep.document() as JSON text: guards, verification, why it could not be planned.
    plan: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Whether guards count the step as a run (it passed them, whatever became of it).
    counts: Mapped[bool] = mapped_column(Boolean, default=False)
    lease_owner: Mapped[str | None] = mapped_column(String(128), nullable=True)
    lease_until: Mapped[float | None] = mapped_column(Float, nullable=True)
    verify_started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # The step's verification window (seconds); None when it declares no verification.
    verify_within: Mapped[float | None] = mapped_column(Float, nullable=True)


class AlertNotificationRow(Base):
    __tablename__ = "alert_notifications"

    # SHA-256 of the body: Alertmanager redelivers the same bytes on retries (Go's JSON encoder sorts map keys).
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    received_at: Mapped[float] = mapped_column(Float, index=True)
    group_key: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    alert_count: Mapped[int] = mapped_column(Integer)


class SignalSilenceRow(Base):
    __tablename__ = "signal_silences"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    metric: Mapped[str | None] = mapped_column(String(256), nullable=True)
    matchers: Mapped[list[str]] = mapped_column(JSON)
    starts_at: Mapped[float] = mapped_column(Float)
    ends_at: Mapped[float] = mapped_column(Float, index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    comment: Mapped[str] = mapped_column(Text)


class PartitionCheckpointRow(Base):
    """A consumer group's position in one partition, kept with the state of the partition's series (below)."""

    __tablename__ = "partition_checkpoints"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    # The next offset to read: every record before it is reflected in the kept series states.
    next_offset: Mapped[int] = mapped_column(BigInteger)


class SeriesCheckpointRow(Base):
    """One series' pipeline state (detector, threshold cooldown, live incident, pending signals) at ``next_offset``."""

    __tablename__ = "series_checkpoints"

    group_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    topic: Mapped[str] = mapped_column(String(255), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    series: Mapped[str] = mapped_column(String(1024), primary_key=True)
    next_offset: Mapped[int] = mapped_column(BigInteger)
    # JSON text written by the store itself: detector states may hold NaN and infinities, which JSON columns refuse.
    state: Mapped[str] = mapped_column(Text)
