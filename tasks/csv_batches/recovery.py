"""Recovery for ``notify.jobs.reconcile``: resume dead jobs, restore lost schedules.

Each pass is cheap (O(pending jobs) in Redis, no S3 call) except after Redis has lost our state:

* a **running** job whose heartbeat is older than ``NOTIFY_JOB_STALE_SECONDS`` (its worker died,
  or its message was lost) is sent again; the new run takes the lease and resumes after its
  checkpoint. A **queued** job (released, never started) silent for three times that is sent
  again too. ``notify:job:{id}:redrive`` keeps two reconcilers from both sending it.
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

from celery import Celery

from storage.config import get_settings
from storage.errors import NotifyError
from storage.keys import parse_csv_upload_key, parse_timestamp
from storage.listing import iter_objects
from storage.objects import head_or_none
from tasks.csv_batches import outcome, scheduling
from tasks.csv_batches import state as st
from tasks.csv_batches.spec import SOURCES, JobSpec
from worker import queues
from worker.settings import get_worker_settings

logger = logging.getLogger(__name__)

QUEUED_STALE_FACTOR = 3
# A schedule rewrites the object (LastModified = schedule time) at most 7 days before it is due;
# look a week further back for jobs that fell due while the state was gone.
REBUILD_WINDOW = timedelta(days=15)


def _app(app: Celery | None) -> Celery:
    if app is None:
        from worker.app import app as default_app

        return default_app
    return app


def redrive_stale_jobs(*, app: Celery | None = None, now: float | None = None) -> list[str]:
    """Send again the running jobs that went silent and the queued jobs that never started."""
    settings = get_worker_settings()
    stale = settings.job_stale_seconds
    now = time.time() if now is None else now
    sent: list[str] = []
    for upload_id, state in st.pending_states().items():
        status = state.get("status")
        if status == st.RUNNING:
            if not st.is_stuck(state, now) or st.lease_holder(upload_id):
                continue
        elif status == st.QUEUED:
            queued = float(state.get("queued_epoch") or 0)
            if now - queued <= stale * QUEUED_STALE_FACTOR:
                continue
        else:
            continue
        params = st.job_params(state)
        if not params or not st.mark_redrive(upload_id, stale):
            continue
        if int(state.get("runs") or 0) > settings.max_redeliveries + 1:
            _give_up(upload_id, state)  # it died every time: a poison file, say
            continue
        try:
            spec = JobSpec.from_params(state.get("service_id", ""), upload_id, params)
        except NotifyError as error:
            logger.error("cannot re-drive %s: %s", upload_id, error.message)
            continue
        queue = state.get("queue") or (
            queues.CSV_BATCHES_BULK if state.get("bulk") == "1" else queues.CSV_BATCHES
        )
        _app(app).send_task(queues.CSV_PROCESS_BATCH, kwargs=spec.task_kwargs(), queue=queue)
        logger.warning("re-drove %s job %s (silent for too long)", status, upload_id)
        sent.append(upload_id)
    return sent


def _give_up(upload_id: str, state: dict[str, str]) -> None:
    """Fail a job that died on every run instead of re-driving it forever."""
    message = (
        f"The job stopped without finishing {state.get('runs')} times (worker killed or out of "
        "memory?); it is not re-driven again. Rows already sent stay sent."
    )
    logger.error("giving up on job %s: %s", upload_id, message)
    counters = {k: int(state.get(k) or 0) for k in ("total", "dispatched", "invalid")}
    try:
        spec = JobSpec.from_params(state.get("service_id", ""), upload_id, st.job_params(state))
        outcome.write_outcome(
            spec.bucket,
            spec.key,
            outcome.outcome_fields(
                st.FAILED,
                **counters,
                finished_at=st.now_iso(),
                error_code="job_stalled",
                params_json=spec.params_json(),
            ),
        )
    except NotifyError as error:
        logger.error("could not record the failure on the object: %s", error.message)
    st.finish(upload_id, st.FAILED, {"error_code": "job_stalled", "error_message": message})


def repair_schedule_index() -> int:
    """Put scheduled jobs missing from ``notify:jobs:scheduled`` back; returns how many."""
    indexed = st.scheduled_members()
    repaired = 0
    for upload_id, state in st.pending_states().items():
        if state.get("status") != st.SCHEDULED or upload_id in indexed:
            continue
        try:
            due = parse_timestamp(state.get("scheduled_for"), "scheduled_for").timestamp()
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
    rescheduled = repair_schedule_index()
    result: dict[str, Any] = {"status": "ok", "resumed": len(resumed), "rescheduled": rescheduled}
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
    return result
