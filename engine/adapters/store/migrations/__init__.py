"""Alembic migration environment for the engine's schema."""
