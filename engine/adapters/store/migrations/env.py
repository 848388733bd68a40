"""Alembic environment: runs migrations on the connection the engine hands over (see ``migrate.py``)."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from engine.adapters.store.tables import Base

connection: Connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
