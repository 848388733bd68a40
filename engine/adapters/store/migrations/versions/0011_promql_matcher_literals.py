"""Stored label matchers are rewritten as PromQL string literals (``engine.domain.promql_strings``).

Earlier versions read a matcher's value between double quotes with ``\\"`` as the only escape and kept every other
backslash as written (``=~"v1\\.2"`` meant the regular expression ``v1\\.2``). Matchers are now read as Prometheus
reads them, where that text is an unknown escape. The silences and the verifications of planned steps kept in the
store are rewritten here so that each keeps the value it had: read the old way, written the new way. A matcher the
old reading did not accept is left as it is.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import json
import re
from typing import Any

import sqlalchemy as sa
from alembic import op

from engine.domain.promql_strings import quote

revision = "0011"
down_revision: str | None = "0010"
branch_labels: str | None = None
depends_on: str | None = None

# What earlier versions accepted (their parser, kept here as it was).
_LEGACY = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')


def rewritten(matcher: str) -> str:
    """``matcher`` as earlier versions read it, written as a PromQL literal (unchanged if they did not read it)."""
    found = _LEGACY.match(matcher)
    if found is None:
        return matcher
    label, op_text, raw = found.groups()
    value = raw.replace('\\"', '"')
    return f"{label}{op_text}{quote(value)}"


def _rewrite_all(matchers: Any) -> Any:
    if not isinstance(matchers, list):
        return matchers
    return [rewritten(m) if isinstance(m, str) else m for m in matchers]


def upgrade() -> None:
    connection = op.get_bind()
    silences = sa.table("signal_silences", sa.column("id", sa.String), sa.column("matchers", sa.JSON))
    for silence_id, matchers in connection.execute(sa.select(silences.c.id, silences.c.matchers)).all():
        updated = _rewrite_all(matchers)
        if updated != matchers:
            connection.execute(silences.update().where(silences.c.id == silence_id).values(matchers=updated))
    actions = sa.table("actions", sa.column("id", sa.String), sa.column("plan", sa.Text))
    rows = connection.execute(sa.select(actions.c.id, actions.c.plan).where(actions.c.plan.is_not(None))).all()
    for action_id, plan in rows:
        try:
            document = json.loads(plan)
            spec = document["verification"]["spec"]
        except (ValueError, TypeError, KeyError):
            continue  # no verification, or not a plan this version wrote
        if not isinstance(spec, dict) or "matchers" not in spec:
            continue
        updated = _rewrite_all(spec["matchers"])
        if updated != spec["matchers"]:
            spec["matchers"] = updated
            connection.execute(actions.update().where(actions.c.id == action_id).values(plan=json.dumps(document)))


def downgrade() -> None:
    # The new literals of values earlier versions could store read back the same way there, except escapes they did
    # not know; nothing is rewritten back.
    pass
