"""Per-service fairness on the CSV job queue: one service's burst cannot hold up the others.

Job size alone (the bulk lanes for big jobs) does not stop one service that sends many
mid-sized jobs at once from filling ``csv-batches`` — and, through their batches, the sink
queue — ahead of every other service. So each service has a small allowance of jobs in flight
on the normal lane (``NOTIFY_SERVICE_BURST_JOBS``, default 2):

* a job taken from a normal-lane queue (any queue without the ``-bulk`` suffix) first claims
  one of its service's slots: ``notify:service:{service_id}:slots``, a sorted set of upload
  ids scored by their last refresh. Claim, trim and count are one Lua script, so concurrent
  workers never give out more slots than the allowance;
* a job that finds its service's slots all taken is not run there: the task hands it over to
  the bulk lane of its queue (``csv-batches-bulk``) with Celery's ``Task.replace`` (same task
  id, so the web app's result handle still gets the job's result), which takes milliseconds.
  A job on a bulk lane also sends its batches to the bulk lane of the sink queue. Other
  services' jobs behind the burst therefore wait for at most the allowance's jobs, not the
  whole burst, and their batches are not queued behind the burst's batches either. kombu's
  Redis transport serves a worker's queues in rotation, so the bulk lane keeps moving too;
* the slot is given back when the run ends, refreshed with the job's lease, and dropped by
  the next claim once it is older than ``NOTIFY_JOB_STALE_SECONDS`` (a worker that died does not
  keep it). The key expires too.

Idempotent under redelivery: the member is the upload id, so a job delivered again (or resumed)
finds its own slot and counts once; a job already moved to the bulk lane is never moved again.
"""

from __future__ import annotations

import time

from worker.runtime.queues import BULK_SUFFIX, bulk_queue
from worker.runtime.redis_state import get_redis, key
from worker.runtime.settings import get_worker_settings

# KEYS[1] slots; ARGV: upload_id, now, stale seconds, allowance, key TTL.
# 1: the job holds a slot (new, or its own already); 0: the service's slots are all taken.
_CLAIM = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[2]) - tonumber(ARGV[3]))
if redis.call('ZSCORE', KEYS[1], ARGV[1])
   or redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  redis.call('EXPIRE', KEYS[1], ARGV[5])
  return 1
end
return 0
"""


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
    settings = get_worker_settings()
    stale = settings.job_stale_seconds
    claimed = get_redis().eval(
        _CLAIM,
        1,
        slots_key(service_id),
        upload_id,
        repr(time.time()),
        stale,
        settings.service_burst_jobs,
        2 * stale,
    )
    if not claimed:
        raise Deferred(bulk_queue(queue))


def refresh_slot(service_id: str, upload_id: str) -> None:
    """Keep a running job's slot fresh (with its lease), so it is not taken as abandoned."""
    stale = get_worker_settings().job_stale_seconds
    with get_redis().pipeline(transaction=False) as pipe:
        pipe.zadd(slots_key(service_id), {upload_id: time.time()}, xx=True)
        pipe.expire(slots_key(service_id), 2 * stale)
        pipe.execute()


def release_slot(service_id: str, upload_id: str) -> None:
    get_redis().zrem(slots_key(service_id), upload_id)


def jobs_in_flight(service_id: str) -> int:
    """The service's normal-lane slots in use (abandoned ones included until trimmed)."""
    return int(get_redis().zcard(slots_key(service_id)))
