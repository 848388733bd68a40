"""When each incident entered its current state: what ack timeouts and escalation delays count from.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.add_column(sa.Column("state_since", sa.Float, nullable=True))
    # Incidents recorded before this revision count from when they opened.
    op.execute("UPDATE incidents SET state_since = opened_at")


def downgrade() -> None:
    with op.batch_alter_table("incidents") as batch:
        batch.drop_column("state_since")
