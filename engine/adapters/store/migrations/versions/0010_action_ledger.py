"""The action ledger holds all remediation state: each step's approval timeout, target, guards and verification,
whether guards count it, its worker's lease and when its verification window opened; the unused dead-letter table
goes (malformed records go to the dead-letter topic).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("actions") as table:
        table.add_column(sa.Column("approval_timeout_s", sa.Float, nullable=True))
        table.add_column(sa.Column("target", sa.String(512), nullable=True))
        table.add_column(sa.Column("namespace", sa.String(256), nullable=True))
        table.add_column(sa.Column("plan", sa.Text, nullable=True))
        table.add_column(sa.Column("counts", sa.Boolean, nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("lease_owner", sa.String(128), nullable=True))
        table.add_column(sa.Column("lease_until", sa.Float, nullable=True))
        table.add_column(sa.Column("verify_started_at", sa.Float, nullable=True))
        table.add_column(sa.Column("verify_within", sa.Float, nullable=True))
    # Steps stored before the ledger counted runs: those that ran or waited for a person still count.
    op.execute(
        "UPDATE actions SET counts = true WHERE status IN "
        "('succeeded', 'dry-run', 'verifying', 'awaiting-approval', 'undone', 'running')"
    )
    op.create_index("ix_actions_counts_requested_at", "actions", ["counts", "requested_at"])
    op.drop_table("dead_letters")


def downgrade() -> None:
    op.create_table(
        "dead_letters",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
    )
    op.drop_index("ix_actions_counts_requested_at", "actions")
    with op.batch_alter_table("actions") as table:
        for column in (
            "verify_within",
            "verify_started_at",
            "lease_until",
            "lease_owner",
            "counts",
            "plan",
            "namespace",
            "target",
            "approval_timeout_s",
        ):
            table.drop_column(column)
