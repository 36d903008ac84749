"""The migrations build exactly the schema tables.py describes, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from tidegate.adapters.sql import make_engine
from tidegate.adapters.sql.migrate import upgrade
from tidegate.adapters.sql.tables import metadata


def _diff(engine: sa.Engine) -> list[object]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": False})
        return list(compare_metadata(ctx, metadata))


def test_sqlite_migrations_match_tables(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    assert _diff(engine) == []
    engine.dispose()


def test_postgresql_migrations_match_tables(pg_database: str) -> None:
    engine = make_engine(pg_database)
    assert _diff(engine) == []
    engine.dispose()
