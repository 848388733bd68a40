"""Signals silenced by on-call for a while.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "signal_silences",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("metric", sa.String(256), nullable=True),
        sa.Column("matchers", sa.JSON, nullable=False),
        sa.Column("starts_at", sa.Float, nullable=False),
        sa.Column("ends_at", sa.Float, nullable=False, index=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("comment", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("signal_silences")
