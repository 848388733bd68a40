"""Alertmanager notifications are remembered by digest and summary only, no longer with their raw body.

The body was never read back: what a notification says reaches the incidents and their timelines, and the digest
is all that recognises a redelivery. Writing every body cost the webhook more than the rest of its work.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    # Batch mode: SQLite cannot drop a column in place on every version, so the table is copied without it.
    with op.batch_alter_table("alert_notifications") as table:
        table.drop_column("body")


def downgrade() -> None:
    with op.batch_alter_table("alert_notifications") as table:
        table.add_column(sa.Column("body", sa.LargeBinary, nullable=False, server_default=sa.text("''")))
