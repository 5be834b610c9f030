"""Redis job state of CSV batches: one hash per job, a lease, and three small indexes.

Keys (all ``notify:``, all with an expiry):

| key | type | what |
|---|---|---|
| ``notify:job:{upload_id}`` | hash | status, parameters, counters, checkpoint, heartbeat, times |
| ``notify:job:{upload_id}:lease`` | string | token of the one runner allowed to work on the job |
| ``notify:job:{upload_id}:redrive`` | string | the reconciler re-sent this job recently |
| ``notify:jobs:pending`` | zset | jobs scheduled, queued or running (score: last change) |
| ``notify:jobs:scheduled`` | zset | scheduled jobs (score: due time, epoch seconds) |
| ``notify:jobs:sinkwatch`` | zset | finished jobs whose rows may not all have reached the sink yet
  (score: when the job finished, or its rows were last re-sent) |
| ``notify:service:{service_id}:uploads`` | zset | a service's jobs (score: start time) |
| ``notify:jobs:sentinel`` | string | present while Redis has kept our state (see recovery) |

Job statuses: ``scheduled`` → ``queued`` (released, or enqueued by ``NotifyClient``; not started)
→ ``running`` → ``finished`` / ``failed``; ``scheduled`` → ``cancelled``. Counters and times are
read in O(1) by ``read_progress``; nothing here calls S3 or scans rows.

The state lives on ``NOTIFY_STATE_REDIS_URL`` (default ``REDIS_URL``); ``broker_run_id`` and
``queue_length`` read the broker (``REDIS_URL``) through its own client, so the two may be
separate servers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime
from typing import Any

import redis

from storage.keys import isoformat
from worker.runtime.queues import REQUEST_ID_HEADER
from worker.runtime.redis_state import get_broker_redis, get_redis, key
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

SCHEDULED = "scheduled"
QUEUED = "queued"
RUNNING = "running"
FINISHED = "finished"
FAILED = "failed"
CANCELLED = "cancelled"
PENDING_STATUSES = (SCHEDULED, QUEUED, RUNNING)
DONE_STATUSES = (FINISHED, FAILED, CANCELLED)

COUNTERS = ("total", "dispatched", "invalid", "stored", "checkpoint")
# How long an index key lives after its last write: longer than any schedule (7 days ahead)
# plus the state TTL, so an index never vanishes under a pending job.
MAX_SCHEDULE_AHEAD_SECONDS = 7 * 24 * 3600


def job_key(upload_id: str) -> str:
    return key("job", upload_id)


def lease_key(upload_id: str) -> str:
    return key("job", upload_id, "lease")


def redrive_key(upload_id: str) -> str:
    return key("job", upload_id, "redrive")


def notifications_key(upload_id: str) -> str:
    """The built-in sink's hash of stored rows (field: notification_id)."""
    return key("notifications", upload_id)


def service_uploads_key(service_id: str) -> str:
    return key("service", service_id, "uploads")


PENDING_KEY = key("jobs", "pending")
SCHEDULED_KEY = key("jobs", "scheduled")
SENTINEL_KEY = key("jobs", "sentinel")
SINK_WATCH_KEY = key("jobs", "sinkwatch")
# kombu's Redis transport keeps one list per priority step: the queue's name for priority 0,
# "{queue}\x06\x16{n}" for the others (kombu.transport.redis PRIORITY_STEPS, sep).
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def now_iso() -> str:
    return isoformat(datetime.now(UTC))


def _ttl() -> int:
    return get_worker_settings().state_ttl_seconds


def _index_ttl() -> int:
    return _ttl() + MAX_SCHEDULE_AHEAD_SECONDS + 24 * 3600


# --- the job hash as a type ----------------------------------------------------------------------


def _int(value: str | None) -> int:
    try:
        return int(value) if value not in (None, "") else 0
    except ValueError:
        return 0


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def _text(value: str | None) -> str | None:
    return value or None


def _flag(value: str | None) -> bool:
    return value not in (None, "", "0")


@dataclass(frozen=True, slots=True)
class Counters:
    """A job's row counters, as the task result, the outcome and the job hash carry them."""

    total: int = 0
    dispatched: int = 0
    invalid: int = 0

    def fields(self) -> dict[str, int]:
        return {"total": self.total, "dispatched": self.dispatched, "invalid": self.invalid}


@dataclass(frozen=True, slots=True)
class JobState:
    """``notify:job:{upload_id}`` read once into typed fields.

    Attribute names are the hash's field names (the wire format: other processes, older
    workers and operators read them), so ``from_hash`` / ``to_fields`` are a plain mapping.
    A field the hash lacks reads as None, 0 or False. Writers still go through the functions
    below (they add heartbeats, expiries and index updates in one round trip).
    """

    upload_id: str
    status: str | None = None
    service_id: str | None = None
    source: str | None = None
    params: str | None = None  # the job's JobSpec.params_json()
    queue: str | None = None  # the queue its message came on (re-drives go there)
    request_id: str | None = None  # the sender's notify_request_id (re-drives carry it on)
    etag: str | None = None
    final_etag: str | None = None
    size: int = 0
    runner: str | None = None
    runs: int = 0
    requeues: int = 0
    # counters
    total: int = 0
    dispatched: int = 0
    invalid: int = 0
    stored: int = 0
    checkpoint: int = 0
    scanned: bool = False
    bulk: bool = False
    # times: ISO 8601 text for people, epoch seconds for arithmetic
    heartbeat: float | None = None
    stored_at: float | None = None
    scheduled_for: str | None = None
    queued_at: str | None = None
    queued_epoch: float | None = None
    started_at: str | None = None
    started_epoch: float | None = None
    updated_at: str | None = None
    finished_at: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    # recovery: where the batches went, and re-sends of them
    sink_task: str | None = None
    sink_queue: str | None = None
    broker_run_id: str | None = None
    resend: bool = False
    resends: int = 0
    resend_requested_epoch: float | None = None
    resend_started_at: str | None = None
    resend_checkpoint: int = 0
    resend_dispatched: int = 0
    resend_invalid: int = 0
    resent_at: str | None = None
    resent_rows: int = 0
    resend_error: str | None = None

    @classmethod
    def from_hash(cls, upload_id: str, data: Mapping[str, str]) -> JobState:
        values: dict[str, Any] = {}
        for name, parse in _PARSERS.items():
            raw = data.get(name)
            if raw is not None:
                values[name] = parse(raw)
        return cls(upload_id=upload_id, **values)

    def to_fields(self, *names: str) -> dict[str, str]:
        """The named fields (all when none are named) as the hash holds them."""
        return {name: _encode(getattr(self, name)) for name in names or _PARSERS}

    @property
    def counters(self) -> Counters:
        return Counters(self.total, self.dispatched, self.invalid)

    @property
    def done(self) -> bool:
        return self.status in DONE_STATUSES

    def resend_headers(self) -> dict[str, str] | None:
        """Message headers for a re-drive or re-send: the sender's request id, if it gave one."""
        return {REQUEST_ID_HEADER: self.request_id} if self.request_id else None

    def job_params(self) -> dict[str, Any] | None:
        return json.loads(self.params) if self.params else None

    def is_stuck(self, now: float | None = None) -> bool:
        """Running, with a heartbeat older than ``NOTIFY_JOB_STALE_SECONDS``."""
        if self.status != RUNNING:
            return False
        now = time.time() if now is None else now
        beat = self.heartbeat
        return beat is None or now - beat > get_worker_settings().job_stale_seconds

    def progress(self) -> dict[str, Any]:
        """What ``read_progress`` returns (see there)."""
        return {
            "upload_id": self.upload_id,
            "service_id": self.service_id,
            "source": self.source,
            "status": self.status,
            "stuck": self.is_stuck(),
            **{name: getattr(self, name) for name in COUNTERS},
            **{name: getattr(self, name) for name in _PROGRESS_TEXT},
        }

    def skipped(self, reason: str) -> dict[str, Any]:
        """The task result for a delivery that does nothing (``status: skipped``)."""
        result: dict[str, Any] = {
            "status": "skipped",
            "reason": reason,
            "upload_id": self.upload_id,
            "job_status": self.status,
            "rows_total": self.total,
            "rows_dispatched": self.dispatched,
            "rows_invalid": self.invalid,
        }
        if self.finished_at:
            result["finished_at"] = self.finished_at
        if self.error_code:
            result["error_code"] = self.error_code
        return result


def _parser(annotation: str) -> Any:
    if annotation == "int":
        return _int
    if annotation == "bool":
        return _flag
    if annotation == "float | None":
        return _float
    return _text


_PARSERS = {f.name: _parser(str(f.type)) for f in dataclass_fields(JobState)[1:]}
_PROGRESS_TEXT = (
    "scheduled_for",
    "queued_at",
    "started_at",
    "updated_at",
    "finished_at",
    "error_code",
    "error_message",
)


def _encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


# --- reading ---------------------------------------------------------------------------------


def read_job(upload_id: str) -> dict[str, str] | None:
    """The raw job hash, or None when Redis has no state for this upload."""
    data = get_redis().hgetall(job_key(upload_id))
    return data or None


def load_job(upload_id: str) -> JobState | None:
    """The job hash as a ``JobState`` (one HGETALL), or None when Redis has no state."""
    data = read_job(upload_id)
    return JobState.from_hash(upload_id, data) if data else None


def load_or_empty(upload_id: str) -> JobState:
    """``load_job``, or an empty state (status None) when Redis knows nothing."""
    return load_job(upload_id) or JobState(upload_id)


def job_params(state: Mapping[str, str]) -> dict[str, Any] | None:
    raw = state.get("params")
    return json.loads(raw) if raw else None


def is_stuck(state: Mapping[str, str], now: float | None = None) -> bool:
    """A running job whose heartbeat is older than ``NOTIFY_JOB_STALE_SECONDS``."""
    return JobState.from_hash("", state).is_stuck(now)


def progress_from_state(upload_id: str, state: Mapping[str, str]) -> dict[str, Any]:
    return JobState.from_hash(upload_id, state).progress()


def read_progress(upload_id: str) -> dict[str, Any] | None:
    """The job's status, counters and times in O(1) (one HGETALL); None if unknown.

    Keys: upload_id, service_id, source, status, stuck, total, dispatched, invalid, stored
    (rows the built-in sink has stored), checkpoint, scheduled_for, queued_at, started_at,
    updated_at, finished_at, error_code, error_message.
    """
    state = load_job(upload_id)
    return state.progress() if state else None


def pending_states() -> dict[str, JobState]:
    """Every job in the pending index (one pipeline: O(number of pending jobs))."""
    r = get_redis()
    members = r.zrange(PENDING_KEY, 0, -1)
    if not members:
        return {}
    with r.pipeline(transaction=False) as pipe:
        for upload_id in members:
            pipe.hgetall(job_key(upload_id))
        states = pipe.execute()
    found: dict[str, JobState] = {}
    gone: list[str] = []
    for upload_id, data in zip(members, states, strict=True):
        state = JobState.from_hash(upload_id, data)
        if state.status in PENDING_STATUSES:
            found[upload_id] = state
        else:
            gone.append(upload_id)
    if gone:
        r.zrem(PENDING_KEY, *gone)  # finished or expired: keep the index small
    return found


def list_jobs() -> list[dict[str, Any]]:
    """Progress of every scheduled, queued or running job (stuck ones flagged)."""
    return [state.progress() for state in pending_states().values()]


def pending_uploads() -> dict[str, dict[str, Any]]:
    """Upload ids of jobs scheduled, queued or running, for cleanup: never delete these.

    Values: ``{"status", "service_id", "source", "scheduled_for"}``. O(number of pending jobs),
    no S3 call.
    """
    return {
        upload_id: {
            "status": state.status,
            "service_id": state.service_id,
            "source": state.source,
            "scheduled_for": state.scheduled_for,
        }
        for upload_id, state in pending_states().items()
    }


def status_summary() -> dict[str, int]:
    """Counts for ``notify-worker status``: running, queued, scheduled and stuck jobs."""
    summary = {"running": 0, "queued": 0, "scheduled": 0, "stuck": 0}
    now = time.time()
    for state in pending_states().values():
        if state.status in summary:
            summary[state.status] += 1
        if state.is_stuck(now):
            summary["stuck"] += 1
    return summary


def service_uploads(service_id: str) -> list[str]:
    """Upload ids of the service's recent jobs, oldest first (for the notifications report)."""
    return get_redis().zrange(service_uploads_key(service_id), 0, -1)


# --- writing ---------------------------------------------------------------------------------


def _mapping(values: Mapping[str, Any]) -> dict[str, str]:
    return {k: "" if v is None else str(v) for k, v in values.items()}


def _guarded(upload_id: str, allowed: tuple[str | None, ...], write: Any) -> str | None:
    """Run ``write(pipe)`` in MULTI only if the job's status is in ``allowed`` (WATCHed, so a
    concurrent cancel or finish is never overwritten). Returns the status found."""
    r = get_redis()
    job = job_key(upload_id)
    while True:
        with r.pipeline() as pipe:
            try:
                pipe.watch(job)
                status = pipe.hget(job, "status")
                if status not in allowed:
                    pipe.unwatch()
                    return status
                pipe.multi()
                write(pipe, status)
                pipe.execute()
                return status
            except redis.WatchError:
                continue


def record_scheduled(upload_id: str, fields: Mapping[str, Any], due: float) -> str:
    """Create or refresh a scheduled job; returns the status the job has afterwards.

    A job that is already queued, running or done is left alone.
    """
    now = time.time()

    def write(pipe: Any, _: str | None) -> None:
        pipe.hset(job_key(upload_id), mapping=_mapping({**fields, "status": SCHEDULED}))
        pipe.expire(job_key(upload_id), int(max(due - now, 0)) + _ttl())
        pipe.zadd(SCHEDULED_KEY, {upload_id: due})
        pipe.expire(SCHEDULED_KEY, _index_ttl())
        pipe.zadd(PENDING_KEY, {upload_id: now})
        pipe.expire(PENDING_KEY, _index_ttl())

    status = _guarded(upload_id, (None, SCHEDULED), write)
    return SCHEDULED if status in (None, SCHEDULED) else str(status)


def start_running(upload_id: str, fields: Mapping[str, Any]) -> bool:
    """Mark the job running (first start or a resume) and index it.

    False (and nothing written) if the job was cancelled or ended meanwhile.
    """
    now = time.time()
    service_id = fields["service_id"]
    uploads = service_uploads_key(service_id)
    started = get_redis().hget(job_key(upload_id), "started_epoch")
    values = {**fields, "status": RUNNING, "heartbeat": now, "updated_at": now_iso()}
    if not started:
        values["started_at"] = now_iso()
        values["started_epoch"] = now

    def write(pipe: Any, _: str | None) -> None:
        pipe.hset(job_key(upload_id), mapping=_mapping(values))
        pipe.hincrby(job_key(upload_id), "runs", 1)
        pipe.expire(job_key(upload_id), _ttl())
        pipe.zadd(PENDING_KEY, {upload_id: now})
        pipe.expire(PENDING_KEY, _index_ttl())
        pipe.zrem(SCHEDULED_KEY, upload_id)
        pipe.zadd(uploads, {upload_id: float(started or now)})
        pipe.zremrangebyscore(uploads, "-inf", now - _ttl())
        pipe.expire(uploads, _ttl())

    status = _guarded(upload_id, (None, *PENDING_STATUSES), write)
    return status not in DONE_STATUSES


def update(upload_id: str, fields: Mapping[str, Any]) -> None:
    """Write fields (counters, checkpoint...) together with a heartbeat, in one HSET."""
    values = {**fields, "heartbeat": time.time(), "updated_at": now_iso()}
    get_redis().hset(job_key(upload_id), mapping=_mapping(values))


def finish(upload_id: str, status: str, fields: Mapping[str, Any]) -> None:
    """Record the end of a job and give every key of the job its expiry."""
    r = get_redis()
    values = {**fields, "status": status, "updated_at": now_iso(), "heartbeat": time.time()}
    values.setdefault("finished_at", now_iso())
    ttl = _ttl()
    now = time.time()
    with r.pipeline() as pipe:
        pipe.hset(job_key(upload_id), mapping=_mapping(values))
        pipe.expire(job_key(upload_id), ttl)
        pipe.zrem(PENDING_KEY, upload_id)
        pipe.zrem(SCHEDULED_KEY, upload_id)
        pipe.expire(notifications_key(upload_id), ttl)
        pipe.delete(redrive_key(upload_id))
        if status == FINISHED and _int(_encode(fields.get("dispatched"))) > 0:
            # Its batches may still wait in the broker: the reconciler watches them arrive.
            _watch(pipe, upload_id, now)
        pipe.execute()


# --- the lease: one runner per job -------------------------------------------------------------

_REFRESH = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def acquire_lease(upload_id: str, token: str, ttl: int) -> bool:
    return bool(get_redis().set(lease_key(upload_id), token, nx=True, ex=max(int(ttl), 1)))


def refresh_lease(upload_id: str, token: str, ttl: int) -> bool:
    """Extend our lease; False means it expired and may belong to someone else now."""
    r = get_redis()
    return bool(r.eval(_REFRESH, 1, lease_key(upload_id), token, max(int(ttl), 1)))


def release_lease(upload_id: str, token: str) -> None:
    get_redis().eval(_RELEASE, 1, lease_key(upload_id), token)


def lease_holder(upload_id: str) -> str | None:
    return get_redis().get(lease_key(upload_id))


# Write only while holding the lease: a runner cut off from Redis for longer than the lease
# must not overwrite, when it comes back, what the runner that took over has written.
_UPDATE_IF_HOLDER = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV, 2))
return 1
"""
# Take an expired lease back only if nobody has started the job since (its hash still names us
# as the runner and it is still running); else the job is someone else's now.
_TAKE_BACK = """
if redis.call('HGET', KEYS[1], 'runner') ~= ARGV[1]
   or redis.call('HGET', KEYS[1], 'status') ~= 'running' then
  return 0
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return 1
end
return 0
"""


def update_if_holder(upload_id: str, token: str, fields: Mapping[str, Any]) -> bool:
    """``update`` (fields with a heartbeat), only if ``token`` holds the job's lease."""
    values = _mapping({**fields, "heartbeat": time.time(), "updated_at": now_iso()})
    flat = [item for pair in values.items() for item in pair]
    keys = (job_key(upload_id), lease_key(upload_id))
    return bool(get_redis().eval(_UPDATE_IF_HOLDER, 2, *keys, token, *flat))


def take_back_lease(upload_id: str, token: str, ttl: int) -> bool:
    """Re-take our expired lease if the job is still running under our token."""
    keys = (job_key(upload_id), lease_key(upload_id))
    return bool(get_redis().eval(_TAKE_BACK, 2, *keys, token, max(int(ttl), 1)))


# --- scheduling claims (atomic) --------------------------------------------------------------

# Release a due job: only the caller whose ZREM removes it, and only from "scheduled".
_CLAIM_DUE = """
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if removed == 1 and redis.call('HGET', KEYS[2], 'status') == 'scheduled' then
  redis.call('HSET', KEYS[2], 'status', 'queued', 'queued_at', ARGV[2], 'queued_epoch', ARGV[3],
             'updated_at', ARGV[2])
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
  return 1
end
return 0
"""

# Cancel a scheduled job. Returns the status the job had ("scheduled" means we cancelled it).
_CANCEL = """
local status = redis.call('HGET', KEYS[2], 'status')
if status == 'scheduled' then
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
  redis.call('HSET', KEYS[2], 'status', 'cancelled', 'finished_at', ARGV[2],
             'updated_at', ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[3])
end
return status
"""


def due_uploads(now: float, limit: int = 100) -> list[str]:
    return get_redis().zrangebyscore(SCHEDULED_KEY, "-inf", now, start=0, num=limit)


def claim_due(upload_id: str) -> bool:
    """Atomically move a due job from ``scheduled`` to ``queued``; True for the one winner."""
    now = time.time()
    keys = [SCHEDULED_KEY, job_key(upload_id), PENDING_KEY]
    return bool(get_redis().eval(_CLAIM_DUE, 3, *keys, upload_id, now_iso(), now))


def claim_cancel(upload_id: str) -> str | None:
    """Cancel a scheduled job atomically; returns its previous status (None: no state)."""
    keys = [SCHEDULED_KEY, job_key(upload_id), PENDING_KEY]
    return get_redis().eval(_CANCEL, 3, *keys, upload_id, now_iso(), _ttl())


def create_cancelled(upload_id: str, fields: Mapping[str, Any]) -> bool:
    """Record a cancellation for a job with no Redis state; False if state appeared meanwhile."""
    r = get_redis()
    values = _mapping({**fields, "status": CANCELLED, "finished_at": now_iso()})
    # HSETNX on status first: whoever creates the hash decides its status.
    if not r.hsetnx(job_key(upload_id), "status", CANCELLED):
        return False
    with r.pipeline() as pipe:
        pipe.hset(job_key(upload_id), mapping=values)
        pipe.expire(job_key(upload_id), _ttl())
        pipe.execute()
    return True


def ensure_scheduled_index(upload_id: str, due: float) -> bool:
    """Put a scheduled job back in the due index; True if it was missing."""
    r = get_redis()
    added = r.zadd(SCHEDULED_KEY, {upload_id: due}, nx=True)
    r.expire(SCHEDULED_KEY, _index_ttl())
    r.zadd(PENDING_KEY, {upload_id: time.time()}, nx=True)
    r.expire(PENDING_KEY, _index_ttl())
    return bool(added)


def scheduled_members() -> dict[str, float]:
    return dict(get_redis().zrange(SCHEDULED_KEY, 0, -1, withscores=True))


def mark_redrive(upload_id: str, ttl: int) -> bool:
    """One re-drive per ``ttl`` seconds per job, whichever reconciler gets here first."""
    return bool(get_redis().set(redrive_key(upload_id), "1", nx=True, ex=max(int(ttl), 1)))


def sentinel_present() -> bool:
    return bool(get_redis().exists(SENTINEL_KEY))


def set_sentinel() -> None:
    get_redis().set(SENTINEL_KEY, now_iso(), ex=_index_ttl())


# --- queued by the client (before its message is sent) -----------------------------------------


def record_queued(upload_id: str, task_kwargs: Mapping[str, Any], queue: str) -> str:
    """Record a job about to be enqueued (``NotifyClient.process_csv``), so the reconciler can
    send it again if the broker loses the message before a worker takes it.

    ``task_kwargs`` are ``notify.csv.process_batch``'s keyword arguments. Only a job Redis knows
    nothing about is recorded; returns the status the job has afterwards.
    """
    params = {
        name: task_kwargs[name]
        for name in ("template", "options", "source", "sender_id")
        if task_kwargs.get(name) is not None
    }
    now = time.time()
    values = {
        "service_id": task_kwargs["service_id"],
        "source": task_kwargs.get("source") or "csv-upload",
        "params": json.dumps(params, separators=(",", ":"), ensure_ascii=True),
        "queue": queue,
        "status": QUEUED,
        "queued_at": now_iso(),
        "queued_epoch": now,
        "updated_at": now_iso(),
    }

    def write(pipe: Any, _: str | None) -> None:
        pipe.hset(job_key(upload_id), mapping=_mapping(values))
        pipe.expire(job_key(upload_id), _ttl())
        pipe.zadd(PENDING_KEY, {upload_id: now})
        pipe.expire(PENDING_KEY, _index_ttl())

    status = _guarded(upload_id, (None,), write)
    return QUEUED if status is None else str(status)


def move_queued(upload_id: str, queue: str) -> None:
    """A queued job's message moved to another queue (fairness): record it, so the reconciler
    looks for the message there before taking it as lost. Any other state is left alone."""

    def write(pipe: Any, _: str | None) -> None:
        pipe.hset(job_key(upload_id), "queue", queue)

    _guarded(upload_id, (QUEUED,), write)


def count_requeue(upload_id: str) -> int:
    """Count one more re-send of a queued job that never started; returns the new count."""
    return int(get_redis().hincrby(job_key(upload_id), "requeues", 1))


def queue_length(queue: str) -> int:
    """Messages waiting in a broker queue (every priority list; not those being worked on)."""
    with get_broker_redis().pipeline(transaction=False) as pipe:
        for suffix in _PRIORITY_SUFFIXES:
            pipe.llen(queue + suffix)
        return sum(pipe.execute())


# --- the broker's identity and the sink watch (see recovery.resend_lost_batches) ----------------


def broker_life() -> tuple[str, float] | None:
    """The broker Redis's ``run_id`` (new on every Redis start) and when that start was (epoch
    seconds, from ``uptime_in_seconds``), in one ``INFO server``. None if the server will not
    say (e.g. an ACL without ``INFO``)."""
    try:
        info = get_broker_redis().info("server")
    except redis.ResponseError as error:
        logger.warning("cannot read the broker's run_id: %s", error)
        return None
    run_id = info.get("run_id")
    if not run_id:
        return None
    return str(run_id), time.time() - float(info.get("uptime_in_seconds") or 0)


def broker_run_id() -> str | None:
    """The broker's current life (see ``broker_life``), or None."""
    life = broker_life()
    return life[0] if life else None


def note_dispatch(upload_id: str, *, sink_task: str, sink_queue: str, fresh: bool) -> None:
    """Record where a dispatch pass sends its batches and on which broker life it started.

    ``fresh``: the pass starts at row 1, so every batch goes to this broker life. A resumed pass
    keeps the life its first batches went to: if the broker restarted since, they may be lost.
    """
    run_id = broker_run_id() or ""
    r = get_redis()
    with r.pipeline() as pipe:
        pipe.hset(job_key(upload_id), mapping={"sink_task": sink_task, "sink_queue": sink_queue})
        if fresh:
            pipe.hset(job_key(upload_id), "broker_run_id", run_id)
        else:
            pipe.hsetnx(job_key(upload_id), "broker_run_id", run_id)
        pipe.execute()


def _watch(pipe: Any, upload_id: str, now: float) -> None:
    pipe.zadd(SINK_WATCH_KEY, {upload_id: now})
    pipe.zremrangebyscore(SINK_WATCH_KEY, "-inf", now - _ttl())
    pipe.expire(SINK_WATCH_KEY, _index_ttl())


WATCH_FIELDS = (
    "status",
    "service_id",
    "queue",
    "bulk",
    "sink_task",
    "sink_queue",
    "broker_run_id",
    "dispatched",
    "stored",
    "heartbeat",
    "stored_at",
    "resend",
    "resend_requested_epoch",
    "resends",
)


def watched_jobs() -> dict[str, tuple[JobState, float]]:
    """The sink watch: ``{upload_id: (some fields of its hash, the watch score: when it
    finished or its rows were last re-sent)}`` (one pipeline); entries older than the state TTL
    are trimmed first."""
    r = get_redis()
    r.zremrangebyscore(SINK_WATCH_KEY, "-inf", time.time() - _ttl())
    members = r.zrange(SINK_WATCH_KEY, 0, -1, withscores=True)
    if not members:
        return {}
    with r.pipeline(transaction=False) as pipe:
        for upload_id, _ in members:
            pipe.hmget(job_key(upload_id), WATCH_FIELDS)
        rows = pipe.execute()
    watched = {}
    for (upload_id, since), row in zip(members, rows, strict=True):
        values = {name: value for name, value in zip(WATCH_FIELDS, row, strict=True) if value}
        watched[upload_id] = (JobState.from_hash(upload_id, values), float(since))
    return watched


def unwatch(*upload_ids: str) -> None:
    if upload_ids:
        get_redis().zrem(SINK_WATCH_KEY, *upload_ids)


def request_resend(upload_id: str) -> int | None:
    """Flag a finished job for a re-send of its rows; returns the job's re-send count, or None
    if it is no longer a finished job."""
    now = time.time()

    def write(pipe: Any, _: str | None) -> None:
        pipe.hset(job_key(upload_id), mapping={"resend": "1", "resend_requested_epoch": now})
        pipe.hincrby(job_key(upload_id), "resends", 1)

    if _guarded(upload_id, (FINISHED,), write) != FINISHED:
        return None
    return _int(get_redis().hget(job_key(upload_id), "resends"))


def begin_resend(upload_id: str) -> None:
    """A re-send pass starts at row 1 on the broker's current life."""
    values = {"broker_run_id": broker_run_id() or "", "resend_started_at": now_iso()}
    get_redis().hset(job_key(upload_id), mapping=values)


def end_resend(upload_id: str, fields: Mapping[str, Any]) -> None:
    """A re-send pass is over (or was abandoned): clear the request, keep watching the sink."""
    now = time.time()
    r = get_redis()
    with r.pipeline() as pipe:
        pipe.hdel(job_key(upload_id), "resend")
        pipe.hset(job_key(upload_id), mapping=_mapping({**fields, "heartbeat": now}))
        pipe.expire(job_key(upload_id), _ttl())
        pipe.expire(notifications_key(upload_id), _ttl())
        if fields.get("resend_error") is None:
            _watch(pipe, upload_id, now)
        else:
            pipe.zrem(SINK_WATCH_KEY, upload_id)
        pipe.execute()
