"""Alembic environment: runs on the connection handed over by :class:`app.models.store.Store`."""

from __future__ import annotations

from alembic import context

from app.models.entities import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the Store runs migrations
    raise RuntimeError("Run migrations through app.models.store.Store")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,  # SQLite needs table rebuilds for ALTER
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
