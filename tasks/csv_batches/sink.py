"""The built-in row sink ``notify.notifications.save_batch`` (a stand-in for the web app's
database worker in the demo and the tests).

Rows are stored in the Redis hash ``notify:notifications:{upload_id}`` (field: notification_id,
value: the row as JSON with its job's ids and template), idempotently: one Lua script sets each
field only if it is new (HSETNX), counts the new ones, adds that count to the job's ``stored``
counter and sets ``stored_at`` (only if the job hash still exists, so a late batch never
recreates an expired job) and refreshes the hash's expiry. A batch delivered twice stores
nothing twice and counts nothing twice. The reconciler compares ``stored`` with ``dispatched``
to find batches the broker lost (recovery.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from storage.errors import InvalidInput
from storage.keys import require_uuid
from tasks.csv_batches import state as st
from tasks.csv_batches.fanout import MAX_BATCH_ROWS
from worker.runtime import queues
from worker.runtime.app import app
from worker.runtime.redis_state import get_redis
from worker.runtime.settings import get_worker_settings

# ARGV: expiry, now (epoch seconds), then notification_id / row JSON pairs.
_STORE = """
local added = 0
for i = 3, #ARGV - 1, 2 do
  added = added + redis.call('HSETNX', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if added > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'stored', added)
  redis.call('HSET', KEYS[2], 'stored_at', ARGV[2])
end
return added
"""
_ROW_FIELDS = ("notification_id", "row_number", "recipient", "personalisation")


def _bad(message: str) -> InvalidInput:
    return InvalidInput(f"batch: {message}", code="invalid_batch")


def save_batch(batch: Any) -> dict[str, Any]:
    """Store a fan-out batch (SPEC §4 shape); returns how many rows were new."""
    if not isinstance(batch, Mapping):
        raise _bad("must be an object")
    upload_id = require_uuid(batch.get("upload_id"), "batch.upload_id")
    require_uuid(batch.get("service_id"), "batch.service_id")
    rows = batch.get("rows")
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_BATCH_ROWS:
        raise _bad(f"rows must be a list of 1 to {MAX_BATCH_ROWS:,} rows")
    common = {
        "upload_id": upload_id,
        "service_id": batch["service_id"],
        "template_id": batch.get("template_id"),
        "template_type": batch.get("template_type"),
        "sender_id": batch.get("sender_id"),
    }
    args = [str(get_worker_settings().state_ttl_seconds), repr(time.time())]
    for row in rows:
        if not isinstance(row, Mapping) or any(name not in row for name in _ROW_FIELDS):
            raise _bad(f"every row needs {', '.join(_ROW_FIELDS)}")
        notification_id = require_uuid(row["notification_id"], "notification_id")
        stored = {"notification_id": notification_id, **common}
        stored.update((name, row[name]) for name in _ROW_FIELDS[1:])
        args.append(notification_id)
        args.append(json.dumps(stored, separators=(",", ":"), ensure_ascii=False))
    keys = [st.notifications_key(upload_id), st.job_key(upload_id)]
    added = int(get_redis().eval(_STORE, len(keys), *keys, *args))
    return {"status": "ok", "upload_id": upload_id, "rows": len(rows), "stored": added}


@app.task(name=queues.NOTIFICATIONS_SAVE_BATCH, queue=queues.DATABASE_TASKS)
def save_batch_task(batch: dict[str, Any]) -> dict[str, Any]:
    return save_batch(batch)
