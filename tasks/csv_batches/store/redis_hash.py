"""The Redis-hash notification store (the embedded default, without a database).

Rows are stored in the hash ``notify:notifications:{upload_id}`` (field: notification_id, value:
the row as JSON with its job's ids and template), idempotently: one Lua script sets each field
only if it is new (HSETNX), counts the new ones, adds that count to the job's ``stored`` counter
and sets ``stored_at`` (only if the job hash still exists, so a late batch never recreates an
expired job) and refreshes the hash's expiry.
"""

from __future__ import annotations

import json
import time

from tasks.csv_batches import state as st
from tasks.csv_batches.store.batch import ROW_FIELDS, Batch
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

# The job's progress only (a store that keeps the rows elsewhere): ARGV: added, now.
_COUNT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HINCRBY', KEYS[1], 'stored', ARGV[1])
  redis.call('HSET', KEYS[1], 'stored_at', ARGV[2])
end
return 1
"""


def record_stored(upload_id: str, added: int) -> None:
    """Add ``added`` to the job's ``stored`` counter and stamp ``stored_at`` (if the job's
    state still exists)."""
    get_redis().eval(_COUNT, 1, st.job_key(upload_id), str(added), repr(time.time()))


class RedisHashStore:
    name = "redis"

    def save(self, batch: Batch) -> int:
        common = {
            "upload_id": batch.upload_id,
            "service_id": batch.service_id,
            "template_id": batch.template_id,
            "template_type": batch.template_type,
            "sender_id": batch.sender_id,
        }
        args = [str(get_worker_settings().state_ttl_seconds), repr(time.time())]
        for row in batch.rows:
            notification_id = row["notification_id"]
            stored = {"notification_id": notification_id, **common}
            stored.update((name, row[name]) for name in ROW_FIELDS[1:])
            args.append(notification_id)
            args.append(json.dumps(stored, separators=(",", ":"), ensure_ascii=False))
        keys = [st.notifications_key(batch.upload_id), st.job_key(batch.upload_id)]
        return int(get_redis().eval(_STORE, len(keys), *keys, *args))

    def stored_count(self, upload_id: str, counted: int | None = None) -> int:
        # The Lua script counts exactly the new rows: the job's counter is the count.
        if counted is not None:
            return counted
        return st.load_or_empty(upload_id).stored
