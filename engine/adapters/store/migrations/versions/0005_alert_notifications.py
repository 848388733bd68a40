"""Alertmanager notifications as received (the raw body), keyed by its digest, so a redelivery is recognised.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "alert_notifications",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("group_key", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_alert_notifications_received_at", "alert_notifications", ["received_at"])


def downgrade() -> None:
    op.drop_index("ix_alert_notifications_received_at", "alert_notifications")
    op.drop_table("alert_notifications")
