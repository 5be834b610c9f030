"""Per-service fairness on the CSV job queue: one service's burst cannot hold up the others.

Job size alone (the bulk lanes for big jobs) does not stop one service that sends many
mid-sized jobs at once from filling ``csv-batches`` — and, through their batches, the sink
queue — ahead of every other service. A worker only sees a job when it takes it from the
queue, and takes them one at a time, so what is counted is a service's recent use of the
normal lane: ``notify:service:{service_id}:slots``, a sorted set of upload ids scored by when
each job started, was last refreshed (with its lease, while it runs) or ended.

* A job taken from a normal-lane queue (any queue without the ``-bulk`` suffix) claims a slot:
  one Lua script drops entries older than ``NOTIFY_SERVICE_BURST_SECONDS`` (default 10), then
  grants the slot if the job has one already or the service has fewer than
  ``NOTIFY_SERVICE_BURST_JOBS`` (default 2) entries (concurrent workers never grant more); if
  not, it is granted anyway when nothing waits in the queue (nobody to be unfair to).
* Otherwise the job is not run there: the task hands it over to the bulk lane of its queue
  (``csv-batches-bulk``) with Celery's ``Task.replace`` (same task id, so the web app's result
  handle gets the job's result), which takes milliseconds. A job on a bulk lane also sends its
  batches to the bulk lane of the sink queue. So another service's job behind the burst waits
  for the burst's allowance, not the whole burst, and its batches do not wait behind the
  burst's batches either.
* Bulk lanes keep moving: kombu's Redis transport serves a worker's queues in rotation, and a
  deployment that gives the bulk lanes their own workers (docs/operations.md) serves them apart.

Idempotent under redelivery: the member is the upload id, so a job delivered again (or resumed)
finds its own slot and counts once; a job already moved to the bulk lane is never moved again.
A worker that dies leaves an entry that simply ages out; the key expires too.
"""

from __future__ import annotations

import time

from tasks.csv_batches import state as st
from worker.runtime.queues import BULK_SUFFIX, bulk_queue
from worker.runtime.redis_state import get_redis, key
from worker.runtime.settings import get_worker_settings

# KEYS[1] the service's slots; ARGV: upload_id, now, window seconds, allowance, key TTL, and
# "1" to grant whatever the count (nothing waits in the lane).
# 1: the job holds a slot (its own already, a free one, or granted); 0: the slots are taken.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
if ARGV[6] == '1' or redis.call('ZSCORE', KEYS[1], ARGV[1])
   or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""

# kombu's Redis transport fetches every queue's priority-0 messages (the default) before any
# queue's lower-priority ones: a worker drains the rest of a burst from the normal lane, each
# in milliseconds, before it runs the jobs it moved.
DEFERRED_PRIORITY = 9


class Deferred(Exception):
    """The job's service has used its allowance: run the job on ``queue`` (a bulk lane)."""

    def __init__(self, queue: str) -> None:
        super().__init__(queue)
        self.queue = queue


def slots_key(service_id: str) -> str:
    return key("service", service_id, "slots")


def on_bulk_lane(queue: str | None) -> bool:
    return bool(queue) and str(queue).endswith(BULK_SUFFIX)


def on_normal_lane(queue: str | None) -> bool:
    """A job that came on this queue takes part in the per-service allowance (a job run in
    process, with no queue, does not)."""
    return bool(queue) and not on_bulk_lane(queue)


def claim_slot(service_id: str, upload_id: str, queue: str) -> None:
    """Hold one of the service's normal-lane slots, or raise ``Deferred`` with the bulk lane."""
    if _claim(service_id, upload_id, grant=False):
        return
    # The slots are taken; defer only if someone else may be waiting in the lane. (The queue
    # is on the broker, which may be another Redis than our state's.)
    if st.queue_length(queue) == 0:
        _claim(service_id, upload_id, grant=True)
        return
    raise Deferred(bulk_queue(queue))


def _claim(service_id: str, upload_id: str, *, grant: bool) -> bool:
    settings = get_worker_settings()
    window = settings.service_burst_seconds
    return bool(
        get_redis().eval(
            _CLAIM,
            1,
            slots_key(service_id),
            upload_id,
            repr(time.time()),
            window,
            settings.service_burst_jobs,
            _key_ttl(window),
            "1" if grant else "0",
        )
    )


def touch_slot(service_id: str, upload_id: str) -> None:
    """A job holding a slot is still running, or has just ended: it counts from now on for
    another window (never adds a job that holds no slot)."""
    window = get_worker_settings().service_burst_seconds
    with get_redis().pipeline(transaction=False) as pipe:
        pipe.zadd(slots_key(service_id), {upload_id: time.time()}, xx=True)
        pipe.expire(slots_key(service_id), _key_ttl(window))
        pipe.execute()


def recent_jobs(service_id: str) -> int:
    """The service's entries: jobs running on the normal lane or started or ended there within
    the window (older ones until the next claim trims them)."""
    return int(get_redis().zcard(slots_key(service_id)))


def _key_ttl(window: int) -> int:
    # Longer than the window, and than a heartbeat period (a running job's refresh keeps it).
    return max(2 * window, 60)
