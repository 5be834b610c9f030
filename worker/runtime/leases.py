"""Task leases: a letter move, report or cleanup sweep held by a worker machine that dies runs
again elsewhere within minutes, not after the broker's visibility timeout.

Redis redelivers an unacknowledged message only after ``NOTIFY_VISIBILITY_TIMEOUT_SECONDS``
(an hour by default). A pool child that dies is covered at once (reject on worker lost
requeues its message), but when the whole machine goes nothing requeues anything. So:

* **Lease record.** When a worker *receives* a message of a leased task (``LEASED_TASKS``), its
  main process writes ``notify:task:{task_id}`` (task name, keyword arguments, queue, worker,
  a per-delivery tag, the delivery's generation) and puts the id in ``notify:tasks:live``
  (score: last heartbeat). Received covers waiting for a pool slot and a retry's countdown too.
* **Heartbeat.** A thread in the worker's main process refreshes the score of every message it
  still holds, several times per ``NOTIFY_JOB_STALE_SECONDS``. The main process is the one that
  dies with the machine, so the heartbeat stops with it.
* **Release only on a real end.** The pool child releases the lease when the task's run ended
  (Celery's ``task_postrun``: succeeded, failed, retried, dropped; the delivery's tag travels
  to it in the request's headers), and the main process when the task was revoked or a re-send
  superseded it. Acknowledgements say nothing: Celery acknowledges a run it terminated after a
  lost connection as if revoked, marks a request acknowledged when the call failed on a dead
  connection, and kombu's requeue puts back only what the server's ``unacked`` hash still
  holds. So any other way a request leaves the worker (a lost broker connection cancels and
  forgets what it held; a killed pool child) keeps the lease, no longer beaten, and the
  reconciler re-sends the task after the stale period. When the message does come back, its
  delivery takes the lease on receipt and no re-send happens. A lease record the state store
  lost (a failover to a replica that had not received it) is written again by the next
  heartbeat, or when its request is let go without a run's end; one Redis refused at receipt
  is retried there too.
* **Re-send.** The reconciler (``notify.jobs.reconcile``) re-sends every task whose heartbeat is
  older than the stale period: same task id (the caller's result arrives under the id it
  knows; the redelivery cap counts every re-send), same queue and arguments, one generation
  higher (message header ``notify_lease_generation``).
* **Old deliveries dropped.** The record keeps the highest generation sent. A delivery of an
  older generation (the dead machine's message, handed out again by Redis an hour later) is
  acknowledged and dropped (Celery's ``Ignore``: no result stored over the re-sent run's),
  never run.

A worker that was only cut off (a partition) and comes back may still finish its own delivery
while the re-sent one runs: the leased workflows are idempotent (a letter is moved exactly once,
a report is never replaced, cleanup deletes only unchanged objects and audits each deletion),
so two runs have the effect of one. Task arguments kept here are ids, dates and flags: no task
whose arguments carry recipients is leased.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

import redis
from celery import current_app, signals

from worker.runtime import queues
from worker.runtime.logs import carried_request_id
from worker.runtime.redis_state import get_redis, key
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

# CSV jobs have their own lease and checkpoint (tasks/csv_batches); sink batches are re-sent by
# the CSV recovery from the pinned file; periodic tasks run again on their next tick.
LEASED_TASKS = frozenset(
    {queues.LETTERS_MOVE_TRANSIENT, queues.REPORTS_GENERATE, queues.CLEANUP_SWEEP}
)
GENERATION_HEADER = "notify_lease_generation"
# Put into the request by the worker's main process on receipt, read by the pool child: which
# delivery's lease the run releases when it ends.
TAG_HEADER = "notify_lease_tag"
LIVE_KEY = key("tasks", "live")
# A request between "received" and "reserved" is in none of the worker's sets for a moment.
_RECEIVED_GRACE_SECONDS = 5.0


def record_key(task_id: str) -> str:
    return key("task", task_id)


def heartbeat_interval(stale_seconds: int | None = None) -> float:
    """Several beats per stale period, so a busy moment never looks like a dead machine."""
    stale = get_worker_settings().job_stale_seconds if stale_seconds is None else stale_seconds
    return max(0.2, min(5.0, stale / 4))


def _record_ttl() -> int:
    # Outlives every redelivery Redis can still make of the message, so an old generation
    # handed out late is still recognised.
    settings = get_worker_settings()
    return settings.visibility_timeout * (settings.max_redeliveries + 2)


def generation_of(value: Any) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0


# --- scripts (each one atomic) ------------------------------------------------------------------

# KEYS: record, live. ARGV: task id, generation, tag, now, ttl, name, queue, kwargs, host.
# Returns 1 when the delivery holds the lease, 0 when a newer generation exists.
_REGISTER = """
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if tonumber(ARGV[2]) < current then
  return 0
end
redis.call('HSET', KEYS[1], 'generation', ARGV[2], 'tag', ARGV[3], 'name', ARGV[6],
           'queue', ARGV[7], 'kwargs', ARGV[8], 'host', ARGV[9], 'received', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""

# KEYS: record, live. ARGV: task id, tag, now. Only the delivery that holds the lease beats.
# Returns 1 (beaten), 0 (another delivery holds it, or it was superseded) or -1 (no record:
# the state store lost it, so the delivery should record it again).
_BEAT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
if redis.call('HGET', KEYS[1], 'tag') == ARGV[2] then
  redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# KEYS: record, live. ARGV: task id, tag. The delivery is over (acknowledged or given back):
# forget the lease, keep the generation (a tombstone that outlives old redeliveries).
_RELEASE = """
if redis.call('HGET', KEYS[1], 'tag') == ARGV[2] then
  redis.call('HDEL', KEYS[1], 'tag')
  redis.call('ZREM', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# KEYS: record, live. ARGV: task id, tag, generation, ttl. The run of this delivery ended (in the
# pool child): release its lease; if the record was lost (a failover), leave a tombstone so the
# worker's main process does not write the lease again for the reconciler.
_FINISH = (
    """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'generation', ARGV[3])
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return 2
end"""
    + _RELEASE
)

# KEYS: record, live. ARGV: task id, new generation, cutoff. After the re-send was published:
# raise the generation (unless the new delivery got there first) and drop the stale lease.
_SUPERSEDE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'generation') or '0')
if current < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'generation', ARGV[2])
  redis.call('HDEL', KEYS[1], 'tag')
  local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if score and tonumber(score) <= tonumber(ARGV[3]) then
    redis.call('ZREM', KEYS[2], ARGV[1])
  end
  return 1
end
return 0
"""


# --- the worker side ------------------------------------------------------------------------------


class _Held:
    __slots__ = ("recorded", "request", "since", "tag", "task_id", "vanished")

    def __init__(self, task_id: str, tag: str, request: Any, *, recorded: bool = True) -> None:
        self.task_id = task_id
        self.tag = tag
        # A strong reference: whether the delivery ended (acknowledged or rejected) or was only
        # forgotten is read from the request itself, which must outlive the worker's sets.
        self.request = request
        self.since = time.monotonic()
        self.recorded = recorded  # False while Redis refused the record (retried each tick)
        self.vanished = False  # seen out of the worker's sets, not yet acknowledged, once


class LeaseKeeper:
    """The leases one worker process holds, and the thread that keeps them fresh."""

    def __init__(self, hostname: str = "") -> None:
        self.hostname = hostname
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()

    def register(self, request: Any) -> bool:
        """A message of a leased task was received: take its lease. False if it is an old
        generation (the task will drop it) or Redis cannot be reached now (the heartbeat
        thread then tries again while the worker still holds the message)."""
        tag = uuid.uuid4().hex
        # The pool child releases the lease when the run ends (``finish``): the tag travels to
        # it in the request's headers, which Celery hands to the child as they are.
        request.request_dict[TAG_HEADER] = tag
        try:
            held = self._record(request, tag)
        except redis.RedisError as error:
            logger.warning("could not record the lease of %s yet: %s", request.id, error)
            with self._lock:
                self._held[tag] = _Held(request.id, tag, request, recorded=False)
            self._ensure_thread()
            return False
        if not held:
            request.request_dict.pop(TAG_HEADER, None)
            return False
        with self._lock:
            self._held[tag] = _Held(request.id, tag, request)
        self._ensure_thread()
        return True

    def _record(self, request: Any, tag: str) -> bool:
        info = request.delivery_info or {}
        payload: dict[str, Any] = {
            "args": list(request.args or ()),
            "kwargs": dict(request.kwargs or {}),
        }
        # A re-send carries the sender's request id on, so its log lines still name it.
        request_id = carried_request_id(request.request_dict.get(queues.REQUEST_ID_HEADER))
        if request_id:
            payload["request_id"] = request_id
        return bool(
            get_redis().eval(
                _REGISTER,
                2,
                record_key(request.id),
                LIVE_KEY,
                request.id,
                generation_of(request.request_dict.get(GENERATION_HEADER)),
                tag,
                time.time(),
                _record_ttl(),
                request.name,
                info.get("routing_key") or queues.TASK_QUEUES.get(request.name, ""),
                json.dumps(payload, separators=(",", ":")),
                self.hostname or getattr(request, "hostname", "") or "",
            )
        )

    def held(self) -> list[str]:
        with self._lock:
            return [h.task_id for h in self._held.values()]

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="notify-task-leases", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(heartbeat_interval())
            self._wake.clear()
            try:
                self.tick()
            except Exception:  # the thread must outlive any one bad tick
                logger.exception("task lease heartbeat failed")

    def tick(self) -> tuple[int, int]:
        """Beat every lease whose request the worker still holds; stop beating those it let go
        (the pool child released the lease if the run ended; otherwise it stays, silent, for
        the reconciler); release those of revoked requests. Returns (beaten, released)."""
        from celery.worker import state as worker_state

        now_mono = time.monotonic()
        beat: list[_Held] = []
        done: list[_Held] = []
        gone: list[_Held] = []
        with self._lock:
            holding = list(self._held.values())
        for held in holding:
            request = held.request
            if (
                request in worker_state.active_requests
                or request in worker_state.reserved_requests
                or request in worker_state.scheduled_requests
                or now_mono - held.since < _RECEIVED_GRACE_SECONDS
            ):
                held.vanished = False
                beat.append(held)
            elif request.acknowledged and request.id in worker_state.revoked:
                done.append(held)  # revoked: acknowledged without a run, never to run again
            elif not held.vanished:
                # Out of every set: ended, or forgotten on a lost connection, or between two
                # of Celery's steps. Look again next tick before deciding; not beaten meanwhile.
                held.vanished = True
            else:
                gone.append(held)
        # A delivery whose record Redis refused at receipt: record it now, beaten or let go
        # (one let go then waits, silent, for the reconciler like any other).
        for held in beat + gone:
            if not held.recorded:
                self._retry_record(held)
        with self._lock:
            for held in done:
                if not held.recorded:  # ended before it was ever recorded: nothing to release
                    self._held.pop(held.tag, None)
        beat = [held for held in beat if held.recorded]
        done = [held for held in done if held.recorded]
        gone = [held for held in gone if held.recorded]
        if not beat and not done and not gone:
            return 0, 0
        now = time.time()
        with get_redis().pipeline(transaction=False) as pipe:
            for held in beat:
                pipe.eval(_BEAT, 2, record_key(held.task_id), LIVE_KEY, held.task_id, held.tag, now)
            for held in done:
                pipe.eval(_RELEASE, 2, record_key(held.task_id), LIVE_KEY, held.task_id, held.tag)
            for held in gone:
                pipe.hget(record_key(held.task_id), "tag")
            pipe.expire(LIVE_KEY, _record_ttl())
            results = pipe.execute()  # a RedisError leaves everything held: next tick
        for held, result in zip(beat, results, strict=False):
            if result == -1:
                self._retry_record(held)  # the record was lost (a failover): write it again
        kept: list[_Held] = []
        for held, tag in zip(gone, results[len(beat) + len(done) :], strict=False):
            if tag is None and not self._record_exists(held):
                # The record was lost in a failover and the run never released it: write it
                # again, or nobody would re-send the task.
                try:
                    self._record(held.request, held.tag)
                except redis.RedisError:
                    continue  # next tick
                tag = held.tag
            if tag == held.tag:
                logger.warning(
                    "task %s left this worker before its run ended: its lease is kept for the "
                    "reconciler",
                    held.task_id,
                )
            kept.append(held)
        with self._lock:
            for held in done + kept:
                self._held.pop(held.tag, None)
        return len(beat), len(done)

    def _record_exists(self, held: _Held) -> bool:
        try:
            return bool(get_redis().exists(record_key(held.task_id)))
        except redis.RedisError:
            return True  # unknown: leave it; the next tick asks again only if still held

    def _retry_record(self, held: _Held) -> None:
        try:
            recorded = self._record(held.request, held.tag)
        except redis.RedisError:
            return  # still unreachable: next tick
        if recorded:
            held.recorded = True
        else:  # a newer generation exists: this delivery will be dropped, nothing to keep
            held.request.request_dict.pop(TAG_HEADER, None)
            with self._lock:
                self._held.pop(held.tag, None)


_keeper: LeaseKeeper | None = None


def keeper() -> LeaseKeeper:
    global _keeper
    if _keeper is None:
        _keeper = LeaseKeeper()
    return _keeper


@signals.task_received.connect
def _on_task_received(request: Any = None, **_: Any) -> None:
    if request is not None and request.name in LEASED_TASKS:
        keeper().register(request)


def finish(task_id: str, tag: str, generation: Any) -> int:
    """The run of a delivery ended (called in the pool child): release its lease. 1 released,
    2 the record was gone (a tombstone is left), 0 another delivery holds the lease."""
    return int(
        get_redis().eval(
            _FINISH,
            2,
            record_key(task_id),
            LIVE_KEY,
            task_id,
            tag,
            generation_of(generation),
            _record_ttl(),
        )
    )


@signals.task_postrun.connect
def _on_task_postrun(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    # Sent by Celery's tracer once the task's body returned or raised (succeeded, failed,
    # retried, dropped), never for a run cut by a killed or terminated child.
    if task is None or task_id is None or task.name not in LEASED_TASKS:
        return
    tag = task.request.get(TAG_HEADER)
    if not tag:
        return
    try:
        finish(task_id, tag, task.request.get(GENERATION_HEADER))
    except redis.RedisError as error:
        # The lease stays; the reconciler re-sends the task, whose run then finds it done.
        logger.warning("could not release the lease of %s: %s", task_id, error)


def superseded(task_id: str, generation: Any) -> bool:
    """Is this delivery an old generation of a task the reconciler has re-sent?"""
    try:
        current = get_redis().hget(record_key(task_id), "generation")
    except redis.RedisError:
        return False
    return generation_of(generation) < generation_of(current)


# --- the reconciler side ----------------------------------------------------------------------


def stale_leases(now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    cutoff = now - get_worker_settings().job_stale_seconds
    return get_redis().zrangebyscore(LIVE_KEY, "-inf", cutoff)


def resend_stale_tasks(*, app: Any = None, now: float | None = None) -> list[str]:
    """Re-send every leased task whose worker stopped beating; returns their task ids.

    Publish first, then raise the generation: a reconciler that dies in between leaves a
    duplicate (harmless), never a task that nobody will run.
    """
    app = app or current_app
    settings = get_worker_settings()
    now = time.time() if now is None else now
    cutoff = now - settings.job_stale_seconds
    r = get_redis()
    sent: list[str] = []
    for task_id in stale_leases(now):
        record = r.hgetall(record_key(task_id))
        if not record.get("name") or not record.get("tag"):
            r.zrem(LIVE_KEY, task_id)  # expired, or its delivery is over
            continue
        # One re-send per stale period, whichever reconciler gets here first.
        if not r.set(key("task", task_id, "resend"), "1", nx=True, ex=settings.job_stale_seconds):
            continue
        generation = generation_of(record.get("generation")) + 1
        payload = _payload(record)
        headers: dict[str, Any] = {GENERATION_HEADER: generation}
        if isinstance(payload.get("request_id"), str):
            headers[queues.REQUEST_ID_HEADER] = payload["request_id"]
        app.send_task(
            record["name"],
            args=list(payload.get("args") or []),
            kwargs=payload.get("kwargs") or {},
            task_id=task_id,
            queue=record.get("queue") or queues.TASK_QUEUES.get(record["name"]),
            headers=headers,
        )
        r.eval(_SUPERSEDE, 2, record_key(task_id), LIVE_KEY, task_id, generation, cutoff)
        logger.warning(
            "re-sent task %s (%s, generation %d): its worker %s stopped beating",
            task_id,
            record["name"],
            generation,
            record.get("host") or "?",
        )
        sent.append(task_id)
    return sent


def _payload(record: Mapping[str, str]) -> dict[str, Any]:
    try:
        payload = json.loads(record.get("kwargs") or "{}")
    except ValueError:
        return {}
    return payload if isinstance(payload, dict) else {}
