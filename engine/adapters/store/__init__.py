"""Persistence of incidents, their timelines, action records and dead letters (SQLAlchemy, Alembic)."""
