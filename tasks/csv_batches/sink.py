"""The built-in row sink ``notify.notifications.save_batch``: checks a fan-out batch and hands
it to the notification store (store/): PostgreSQL when ``NOTIFY_DATABASE_URL`` is set, else the
Redis hash that stands in for the web app's database worker in the demo and the tests.

Either store keeps each row once, by notification_id: a batch delivered twice stores nothing
twice and counts nothing twice. The reconciler compares the store's count of a job's rows with
its dispatched count to find batches the broker lost (recovery.py).
"""

from __future__ import annotations

from typing import Any

from tasks.csv_batches.store import notification_store
from tasks.csv_batches.store.batch import parse_batch
from worker.runtime import queues
from worker.runtime.app import app


def save_batch(batch: Any) -> dict[str, Any]:
    """Store a fan-out batch; returns how many rows were new."""
    parsed = parse_batch(batch)
    added = notification_store().save(parsed)
    return {
        "status": "ok",
        "upload_id": parsed.upload_id,
        "rows": len(parsed.rows),
        "stored": added,
    }


@app.task(name=queues.NOTIFICATIONS_SAVE_BATCH, queue=queues.DATABASE_TASKS)
def save_batch_task(batch: dict[str, Any]) -> dict[str, Any]:
    return save_batch(batch)
