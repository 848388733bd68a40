"""Approvals and explanations on actions.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        # Room for the longer step states ("awaiting-approval").
        batch.alter_column("status", type_=sa.String(32), existing_type=sa.String(16), existing_nullable=True)
        batch.add_column(sa.Column("approval_due_at", sa.Float, nullable=True))
        batch.add_column(sa.Column("decided_by", sa.String(128), nullable=True))
        batch.add_column(sa.Column("explanation", sa.JSON, nullable=True))
        batch.create_index("ix_actions_status", ["status"])


def downgrade() -> None:
    with op.batch_alter_table("actions") as batch:
        batch.drop_index("ix_actions_status")
        batch.drop_column("explanation")
        batch.drop_column("decided_by")
        batch.drop_column("approval_due_at")
        batch.alter_column("status", type_=sa.String(16), existing_type=sa.String(32), existing_nullable=True)
