"""Alembic environment; the URL and connection come from tidegate.adapters.sql.migrate."""

from __future__ import annotations

from alembic import context

from tidegate.adapters.sql.tables import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:  # pragma: no cover - Tidegate always passes a connection
    raise RuntimeError("run migrations through `tidegate db upgrade`")

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
