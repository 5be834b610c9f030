"""The "queued" record of a CSV job, written to the workers' Redis before its message is sent.

If the broker loses the message, the workers' reconciler finds the job still ``queued`` after a
while and sends it again. The keys and fields are the workers' own (``notify:job:{upload_id}``,
``notify:jobs:pending``); a test in the workers' repository compares them with what this module
writes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from notify_worker_client.validation import isoformat

PREFIX = "notify:"
PENDING_KEY = PREFIX + "jobs:pending"
QUEUED = "queued"
DEFAULT_STATE_TTL_SECONDS = 7 * 24 * 3600
# An index key outlives any job in it: the longest schedule (7 days) plus a day, on top.
_INDEX_EXTRA_SECONDS = 7 * 24 * 3600 + 24 * 3600


def job_key(upload_id: str) -> str:
    return f"{PREFIX}job:{upload_id}"


def queued_fields(task_kwargs: Mapping[str, Any], queue: str, now: float) -> dict[str, str]:
    """The job hash's fields for a job about to be sent (text, as Redis stores them)."""
    params = {
        name: task_kwargs[name]
        for name in ("template", "options", "source", "sender_id")
        if task_kwargs.get(name) is not None
    }
    moment = isoformat(datetime.fromtimestamp(now, timezone.utc))
    values = {
        "service_id": task_kwargs["service_id"],
        "source": task_kwargs.get("source") or "csv-upload",
        "params": json.dumps(params, separators=(",", ":"), ensure_ascii=True),
        "queue": queue,
        "status": QUEUED,
        "queued_at": moment,
        "queued_epoch": now,
        "updated_at": moment,
    }
    return {k: "" if v is None else str(v) for k, v in values.items()}


def record_queued(
    redis_client: Any,
    upload_id: str,
    task_kwargs: Mapping[str, Any],
    queue: str,
    *,
    ttl_seconds: int = DEFAULT_STATE_TTL_SECONDS,
) -> str:
    """Record the job as queued unless Redis already knows it; returns its status afterwards.

    WATCH/MULTI, so a job a worker has started (or finished) meanwhile is never overwritten.
    """
    import redis  # the optional extra: only needed when the client records state

    key = job_key(upload_id)
    now = time.time()
    fields = queued_fields(task_kwargs, queue, now)
    while True:
        with redis_client.pipeline() as pipe:
            try:
                pipe.watch(key)
                status = pipe.hget(key, "status")
                if status is not None:
                    pipe.unwatch()
                    return status.decode() if isinstance(status, bytes) else str(status)
                pipe.multi()
                pipe.hset(key, mapping=fields)
                pipe.expire(key, ttl_seconds)
                pipe.zadd(PENDING_KEY, {upload_id: now})
                pipe.expire(PENDING_KEY, ttl_seconds + _INDEX_EXTRA_SECONDS)
                pipe.execute()
                return QUEUED
            except redis.WatchError:
                continue


def read_job(redis_client: Any, upload_id: str) -> dict[str, str] | None:
    """The job's raw hash in the workers' Redis (text values), or None when unknown."""
    raw = redis_client.hgetall(job_key(upload_id))
    if not raw:
        return None
    return {
        (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
        for k, v in raw.items()
    }
