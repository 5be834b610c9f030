"""Where the built-in sink keeps a job's rows: the notification store.

Two implementations of one small interface (``NotificationStore``):

* ``redis_hash.RedisHashStore`` — the Redis hash ``notify:notifications:{upload_id}``; the
  embedded default (demo, tests) when no database is configured;
* ``postgres.PostgresStore`` — the ``notifications`` table in PostgreSQL, used whenever
  ``NOTIFY_DATABASE_URL`` is set.

Both store each row at most once, keyed by its notification_id, so a batch delivered twice, a
redelivered batch and a re-sent job all leave every row exactly once; ``save`` returns how many
rows were new. ``stored_count`` is what the reconciler compares with the job's dispatched count.
"""

from __future__ import annotations

from tasks.csv_batches.store.batch import NotificationStore
from worker.runtime.database import database_enabled


def notification_store() -> NotificationStore:
    """PostgreSQL when ``NOTIFY_DATABASE_URL`` is set, else the Redis hash."""
    if database_enabled():
        from tasks.csv_batches.store.postgres import PostgresStore

        return PostgresStore()
    from tasks.csv_batches.store.redis_hash import RedisHashStore

    return RedisHashStore()
