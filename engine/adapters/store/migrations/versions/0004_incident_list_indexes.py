"""Indexes that serve incident lists newest first, with and without a state filter, as keyset pages.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_incidents_opened_at_id", "incidents", ["opened_at", "id"])
    op.create_index("ix_incidents_state_opened_at_id", "incidents", ["state", "opened_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_incidents_state_opened_at_id", "incidents")
    op.drop_index("ix_incidents_opened_at_id", "incidents")
