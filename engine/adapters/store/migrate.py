"""Brings a database to the newest schema with Alembic, on the engine's own async connection.

Replicas of the engine start together against one PostgreSQL database; their migrations take turns under a
transaction-scoped advisory lock, so the second finds the schema already current instead of racing the first to
create it. SQLite has no such lock: a migration that loses the race to another process fails on a table the
other just made, and is simply run again, when it finds the schema current.

A database whose schema is at a revision this engine does not know (a newer engine migrated it) is refused with
``SchemaTooNewError``, before anything is changed: an older engine would misread what a newer one stores.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_random

from engine.domain.errors import ConfigurationError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# An arbitrary constant that names the migration lock among PostgreSQL advisory locks ("aiops" in ASCII).
MIGRATION_LOCK_ID = 0x6169_6F70_73


class SchemaTooNewError(ConfigurationError):
    """The database was migrated by a newer engine than this one."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


async def upgrade_to_head(engine: AsyncEngine) -> None:
    def _upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            # Held until this transaction ends, i.e. until the upgrade is committed.
            connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        config = alembic_config()
        known = {revision.revision for revision in ScriptDirectory.from_config(config).walk_revisions()}
        unknown = sorted(set(MigrationContext.configure(connection).get_current_heads()) - known)
        if unknown:
            raise SchemaTooNewError(
                f"the database schema is at revision {', '.join(unknown)}, which this engine does not know "
                "(a newer version of the engine migrated it); run that version or a newer one"
            )
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    # Only SQLite loses such races (PostgreSQL takes turns, above), and its loser fails with OperationalError.
    retryable: tuple[type[BaseException], ...] = (OperationalError,) if engine.dialect.name == "sqlite" else ()
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(retryable),
        stop=stop_after_attempt(3),
        wait=wait_random(0.05, 0.3),
        reraise=True,
    ):
        with attempt:
            async with engine.begin() as connection:
                await connection.run_sync(_upgrade)
