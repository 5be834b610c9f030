"""Recovery for ``notify.jobs.reconcile``: resume dead jobs, re-send lost messages, restore
lost schedules.

Each pass is cheap (O(pending + watched jobs) in Redis, at most one ``INFO`` and a few ``LLEN``,
no S3 call) except after Redis has lost our state:

* a **running** job whose heartbeat is older than ``NOTIFY_JOB_STALE_SECONDS`` (its worker died,
  or its message was lost) is sent again; the new run takes the lease and resumes after its
  checkpoint. A **queued** job (released by ``release_due`` or enqueued by ``NotifyClient``,
  never started) is sent again once it is older than the stale period and its queue is empty
  (its message cannot be waiting there), or older than three periods whatever the queue holds.
  ``notify:job:{id}:redrive`` keeps two reconcilers from both sending it.
* a **finished** job whose sink batches may have been lost by the broker gets its rows sent
  again from row 1 (``resend_lost_batches``; the worker side is resend.py).
* a **scheduled** job missing from the due index is put back.
* when ``notify:jobs:sentinel`` is missing (Redis restarted empty, or first run), the CSV and
  contact-list buckets are listed and every recent object whose metadata carries a
  ``scheduled_for`` but no outcome gets its schedule back (from ``processing_params``).
  Running jobs whose state was lost with Redis cannot be found this way: unscheduled jobs
  leave no mark on the object until they end (see docs/csv-batches.md).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery, current_app

from storage.errors import NotifyError, TransientError
from storage.keys import parse_csv_upload_key, parse_timestamp
from storage.listing import iter_objects
from storage.objects import head_or_none
from storage.settings import get_settings
from tasks.csv_batches import outcome_metadata, scheduling
from tasks.csv_batches import state as st
from tasks.csv_batches.fanout import MAX_BATCH_ROWS
from tasks.csv_batches.spec import SOURCES, JobSpec
from tasks.csv_batches.state import JobState
from tasks.csv_batches.store import notification_store
from worker.runtime import queues
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

QUEUED_STALE_FACTOR = 3
# How many times one finished job's rows may be re-sent (each after its sink went quiet).
MAX_RESENDS = 3
# An external sink's batches handed to the broker longer than this before it restarted are
# taken as consumed (nothing can count them): a bigger backlog lost in a restart is not re-sent.
EXTERNAL_SINK_BACKLOG_SECONDS = 3600
# A schedule rewrites the object (LastModified = schedule time) at most 7 days before it is due;
# look a week further back for jobs that fell due while the state was gone.
REBUILD_WINDOW = timedelta(days=15)


def redrive_stale_jobs(*, app: Celery | None = None, now: float | None = None) -> list[str]:
    """Send again the running jobs that went silent and the queued jobs that never started."""
    settings = get_worker_settings()
    stale = settings.job_stale_seconds
    now = time.time() if now is None else now
    sent: list[str] = []
    lengths: dict[str, int] = {}
    for upload_id, state in st.pending_states().items():
        status = state.status
        queue = _job_queue(state)
        if status == st.RUNNING:
            if not state.is_stuck(now) or st.lease_holder(upload_id):
                continue
        elif status == st.QUEUED:
            if not _queued_looks_lost(state, queue, now, stale, lengths):
                continue
        else:
            continue
        params = state.job_params()
        if not params or not st.mark_redrive(upload_id, stale):
            continue
        if state.runs > settings.max_redeliveries + 1:
            _give_up(upload_id, state)  # it died every time: a poison file, say
            continue
        if status == st.QUEUED and st.count_requeue(upload_id) > settings.max_redeliveries + 1:
            _give_up(upload_id, state, code="job_not_started")  # every delivery refused it
            continue
        try:
            spec = JobSpec.from_params(state.service_id or "", upload_id, params)
        except NotifyError as error:
            logger.error("cannot re-drive %s: %s", upload_id, error.message)
            if status == st.QUEUED:  # never started: nothing to resume, nothing on the object
                st.finish(
                    upload_id,
                    st.FAILED,
                    {"error_code": "invalid_job_state", "error_message": error.message},
                )
            continue
        (app or current_app).send_task(
            queues.CSV_PROCESS_BATCH,
            kwargs=spec.task_kwargs(),
            queue=queue,
            headers=state.resend_headers(),
        )
        logger.warning("re-drove %s job %s (silent for too long)", status, upload_id)
        sent.append(upload_id)
    return sent


def _job_queue(state: JobState) -> str:
    return state.queue or (queues.CSV_BATCHES_BULK if state.bulk else queues.CSV_BATCHES)


def _queue_length(queue: str, lengths: dict[str, int]) -> int:
    """``LLEN`` of a broker queue, once per pass."""
    if queue not in lengths:
        lengths[queue] = st.queue_length(queue)
    return lengths[queue]


def _queued_looks_lost(
    state: JobState, queue: str, now: float, stale: int, lengths: dict[str, int]
) -> bool:
    """A queued job whose message cannot be waiting any more: older than the stale period with
    nothing in its queue, or older than three periods (a queue that never empties)."""
    age = now - (state.queued_epoch or 0)
    if age > stale * QUEUED_STALE_FACTOR:
        return True
    return age > stale and _queue_length(queue, lengths) == 0


def _give_up(upload_id: str, state: JobState, code: str = "job_stalled") -> None:
    """Fail a job that died on every run instead of re-driving it forever."""
    if code == "job_stalled":
        message = (
            f"The job stopped without finishing {state.runs} times (worker killed or out "
            "of memory?); it is not re-driven again. Rows already sent stay sent."
        )
    else:
        message = (
            "The job was sent again several times and never started (every delivery refused "
            "or lost); it is not re-sent again."
        )
    logger.error("giving up on job %s: %s", upload_id, message)
    try:
        spec = JobSpec.from_params(state.service_id or "", upload_id, state.job_params() or {})
        outcome_metadata.write_outcome(
            spec.bucket,
            spec.key,
            outcome_metadata.outcome_fields(
                st.FAILED,
                **state.counters.fields(),
                finished_at=st.now_iso(),
                error_code=code,
                params_json=spec.params_json(),
            ),
        )
    except NotifyError as error:
        logger.error("could not record the failure on the object: %s", error.message)
    st.finish(upload_id, st.FAILED, {"error_code": code, "error_message": message})


def resend_lost_batches(*, app: Celery | None = None, now: float | None = None) -> list[str]:
    """Re-send the rows of finished jobs whose sink batches the broker may have lost.

    Every finished job that dispatched rows is watched (``notify:jobs:sinkwatch``) until its
    rows are known to have left the broker. Nothing is decided while the job is not quiet (a
    batch stored, or a re-send requested or running, within the stale period) or while a
    requested re-send may still wait in the job's queue. Then:

    * **built-in sink** (``notify.notifications.save_batch``): done when the rows its store
      holds (the ``stored`` counter, or the table's count with PostgreSQL) reach ``dispatched``.
      Lost when it has not and the sink queue holds too few messages to carry the missing rows.
    * **any other sink**: nothing counts what it stored, so the broker's life is compared. Done
      when, on the life the job dispatched on, its sink queue is seen empty (every earlier
      message has been taken), or the job has been watched for
      ``EXTERNAL_SINK_BACKLOG_SECONDS``. Lost when the broker's ``run_id`` has changed since
      (Redis restarted) and the job finished less than that long before the restart: the whole
      job is re-sent, and the sink must ignore notification ids it already has.

    A lost job is flagged and ``notify.csv.process_batch`` sent again to its queue; the worker
    re-sends from row 1 (resend.py). At most ``MAX_RESENDS`` per job, then it is logged and
    left. One ``INFO`` (only if an external sink is watched) and one ``LLEN`` per queue a pass.
    Returns the upload ids re-sent.
    """
    watched = st.watched_jobs()
    if not watched:
        return []
    stale = get_worker_settings().job_stale_seconds
    now = time.time() if now is None else now
    lengths: dict[str, int] = {}
    life: list[tuple[str, float] | None] = []  # the broker's (run_id, started), read once
    done: list[str] = []
    sent: list[str] = []
    for upload_id, (state, since) in watched.items():
        sink_task, sink_queue = state.sink_task, state.sink_queue
        if state.status != st.FINISHED or not sink_task or not sink_queue:
            done.append(upload_id)  # expired, or dispatched before anything was recorded
            continue
        quiet_since = max(
            state.heartbeat or 0, state.stored_at or 0, state.resend_requested_epoch or 0
        )
        if now - quiet_since <= stale:
            continue  # the sink is storing, or a re-send is under way or was just asked for
        if _resend_may_be_queued(state, now, stale, lengths):
            continue
        dispatched, stored = state.dispatched, state.stored
        if sink_task == queues.NOTIFICATIONS_SAVE_BATCH:
            try:
                stored = notification_store().stored_count(upload_id, stored)
            except TransientError as error:
                # The database is unreachable: decide on a later pass; other jobs go on.
                logger.warning("stored count of %s unavailable: %s", upload_id, error.code)
                continue
            missing = dispatched - stored
            if missing <= 0:
                done.append(upload_id)
                continue
            if _queue_length(sink_queue, lengths) * MAX_BATCH_ROWS >= missing:
                continue  # they may still be waiting their turn
            why = f"{dispatched} rows dispatched, {stored} stored"
        else:
            if not life:
                life.append(st.broker_life())
            if life[0] is None:
                continue  # the broker will not say who it is: nothing to compare
            run_id, started = life[0]
            if state.broker_run_id == run_id:
                if _queue_length(sink_queue, lengths) == 0:
                    done.append(upload_id)  # every batch has left the broker
                elif now - since > EXTERNAL_SINK_BACKLOG_SECONDS:
                    done.append(upload_id)  # a later restart would not re-send it anyway
                continue
            if since < started - EXTERNAL_SINK_BACKLOG_SECONDS:
                done.append(upload_id)  # finished long before the restart: taken as consumed
                continue
            why = f"the broker restarted since its {dispatched} rows were dispatched"
        if not st.mark_redrive(upload_id, stale):
            continue  # another reconciler is at it
        if _resend(upload_id, state, why, app):
            sent.append(upload_id)
        else:
            done.append(upload_id)
    st.unwatch(*done)
    return sent


def _resend_may_be_queued(state: JobState, now: float, stale: int, lengths: dict[str, int]) -> bool:
    """A re-send was asked for and its message may still wait in the job's queue (as for a
    queued job: unless it is older than three stale periods)."""
    if not state.resend:
        return False
    asked = state.resend_requested_epoch or 0
    if now - asked > stale * QUEUED_STALE_FACTOR:
        return False
    return _queue_length(_job_queue(state), lengths) > 0


def _resend(upload_id: str, state: JobState, why: str, app: Any) -> bool:
    """Ask a worker to re-send the job's rows; False: it will not be, stop watching it."""
    if state.resends >= MAX_RESENDS:
        logger.error(
            "job %s: sink batches still missing after %d re-sends (%s); not re-sent again",
            upload_id,
            MAX_RESENDS,
            why,
        )
        return False
    full = st.load_or_empty(upload_id)
    try:
        spec = JobSpec.from_params(full.service_id or "", upload_id, full.job_params() or {})
    except (NotifyError, AttributeError, ValueError) as error:
        logger.error("cannot re-send the rows of %s: %s", upload_id, error)
        return False
    resends = st.request_resend(upload_id)
    if resends is None:
        return False
    (app or current_app).send_task(
        queues.CSV_PROCESS_BATCH,
        kwargs=spec.task_kwargs(),
        queue=_job_queue(full),
        headers=full.resend_headers(),
    )
    logger.warning("re-sending the rows of job %s (re-send %d): %s", upload_id, resends, why)
    return True


def repair_schedule_index() -> int:
    """Put scheduled jobs missing from ``notify:jobs:scheduled`` back; returns how many."""
    indexed = st.scheduled_members()
    repaired = 0
    for upload_id, state in st.pending_states().items():
        if state.status != st.SCHEDULED or upload_id in indexed:
            continue
        try:
            due = parse_timestamp(state.scheduled_for, "scheduled_for").timestamp()
        except NotifyError:
            continue
        if st.ensure_scheduled_index(upload_id, due):
            repaired += 1
    return repaired


def rebuild_schedules_from_metadata(*, now: datetime | None = None) -> int:
    """Recreate Redis schedules from the objects' metadata; returns how many were rebuilt."""
    now = now or datetime.now(UTC)
    since = now - REBUILD_WINDOW
    settings = get_settings()
    rebuilt = 0
    for source in SOURCES:
        bucket = settings.bucket(source)
        for listed in iter_objects(bucket, "service-"):
            ids = parse_csv_upload_key(listed.key)
            if ids is None or listed.last_modified < since:
                continue
            if st.read_job(ids.object_id) is not None:
                continue
            info = head_or_none(bucket, listed.key)
            if info is None:
                continue
            metadata = info.metadata
            if metadata.get("processing_status") or not metadata.get("scheduled_for"):
                continue
            params = scheduling.scheduled_params(metadata)
            try:
                if params is None:
                    raise NotifyError("no processing_params recorded")
                spec = JobSpec.from_params(ids.service_id, ids.object_id, params)
                due = parse_timestamp(metadata["scheduled_for"], "scheduled_for")
            except NotifyError as error:
                logger.error("cannot rebuild the schedule of %s: %s", listed.key, error.message)
                continue
            st.record_scheduled(
                spec.upload_id,
                scheduling._scheduled_fields(spec, info, metadata["scheduled_for"]),
                due.timestamp(),
            )
            logger.warning("rebuilt lost schedule of %s", spec.upload_id)
            rebuilt += 1
    return rebuilt


def reconcile(
    *, app: Celery | None = None, rebuild: bool | None = None, now: float | None = None
) -> dict[str, Any]:
    """One recovery pass. ``rebuild=None``: rebuild from metadata only if Redis lost state."""
    resumed = redrive_stale_jobs(app=app, now=now)
    resent = resend_lost_batches(app=app, now=now)
    rescheduled = repair_schedule_index()
    result: dict[str, Any] = {
        "status": "ok",
        "resumed": len(resumed),
        "resent": len(resent),
        "rescheduled": rescheduled,
    }
    if rebuild or (rebuild is None and not st.sentinel_present()):
        try:
            result["rebuilt"] = rebuild_schedules_from_metadata()
        except NotifyError as error:
            # Keep the sentinel unset: the next pass tries again.
            logger.error("could not rebuild schedules from S3: %s", error.message)
            result["rebuild_error"] = error.code
        else:
            result["rescheduled"] += result["rebuilt"]
            st.set_sentinel()
    if resumed:
        result["upload_ids"] = resumed
    if resent:
        result["resent_upload_ids"] = resent
    return result
