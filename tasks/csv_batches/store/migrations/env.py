"""Alembic's environment for the notification schema.

Run through ``tasks.csv_batches.store.schema.upgrade``, which hands over a connection that
already holds the upgrade's advisory lock inside its transaction; migrations run in that same
transaction (PostgreSQL DDL is transactional), so a failed upgrade leaves nothing half done.
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "Run migrations with `notify-worker db upgrade`, not the alembic command: the upgrade "
        "takes a lock so two never run at once."
    )
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
