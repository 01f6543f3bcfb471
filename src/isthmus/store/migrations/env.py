"""Alembic environment: runs on the connection the caller hands over (see store.db.upgrade)."""

from alembic import context

from isthmus.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("isthmus migrations run through isthmus.store.db.upgrade(engine)")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
