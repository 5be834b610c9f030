"""Scheduled CSV jobs: recorded durably, released when due, cancellable until then.

Never a broker ETA or countdown: Redis redelivers unacknowledged ETA messages after the
visibility timeout, so a job scheduled days ahead would run early, or twice. Instead:

* ``schedule_job`` writes ``scheduled_for`` (and the job's parameters) into the CSV object's
  metadata — the durable record the reconciler rebuilds from — and then records the job in
  Redis: the job hash (status ``scheduled``) and ``notify:jobs:scheduled`` (score: due time).
* ``release_due`` (beat, every 30 s) claims each due job atomically (a Lua script: the one
  caller whose ZREM removes it, and only from ``scheduled``, moves it to ``queued``) and sends
  ``notify.csv.process_batch`` on its queue (``csv-batches-bulk`` when the web app's
  ``notification_count`` says it is big).
* ``cancel_job`` moves ``scheduled`` to ``cancelled`` atomically (the same lock-free claim), so
  a job is either released or cancelled, never both; it records ``processing_status=cancelled``
  on the object.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery, current_app

from storage.errors import InvalidInput, NotifyError, S3NotFound
from storage.keys import csv_upload_key, isoformat, parse_timestamp, require_uuid
from storage.objects import ObjectInfo, head, head_or_none
from storage.settings import get_settings
from tasks.csv_batches import outcome_metadata
from tasks.csv_batches import state as st
from tasks.csv_batches.spec import SOURCES, JobSpec
from worker.runtime import queues
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

MAX_AHEAD = timedelta(days=7)
# Clocks differ a little between the web app and the workers.
CLOCK_SLACK = timedelta(minutes=5)
RELEASE_PAGE = 100


def parse_due(scheduled_for: Any) -> datetime:
    """``scheduled_for`` as an aware datetime; refuses more than 7 days ahead."""
    due = parse_timestamp(scheduled_for, "scheduled_for")
    if due - datetime.now(UTC) > MAX_AHEAD + CLOCK_SLACK:
        raise InvalidInput(
            f"scheduled_for may be at most 7 days ahead, got {isoformat(due)}.",
            code="invalid_scheduled_for",
        )
    return due


def job_queue(metadata: dict[str, str]) -> str:
    """The job's own queue, from the web app's ``notification_count`` (as the client does)."""
    try:
        count = int(metadata.get("notification_count") or 0)
    except ValueError:
        count = 0
    big = count > get_worker_settings().bulk_threshold_rows
    return queues.CSV_BATCHES_BULK if big else queues.CSV_BATCHES


def schedule_job(spec: JobSpec, due: datetime, *, queue: str | None = None) -> dict[str, Any]:
    """Record a job to start at ``due`` (object metadata first, then Redis). Idempotent.

    ``queue``: where to start it when due (the queue the scheduling message came on, which the
    client chose from the job's size); else judged from the web app's ``notification_count``.
    """
    try:
        info = head(spec.bucket, spec.key)
    except S3NotFound:
        raise InvalidInput(
            f"The CSV file for upload {spec.upload_id} does not exist in {spec.source}.",
            code="file_not_found",
        ) from None
    recorded = outcome_metadata.recorded_outcome(info.metadata)
    if recorded is not None:
        return {
            "status": "skipped",
            "reason": "already_done",
            "upload_id": spec.upload_id,
            **recorded,
        }
    due_iso = isoformat(due)
    params = spec.params_json()
    if (
        info.metadata.get("scheduled_for") != due_iso
        or info.metadata.get("processing_params") != params
    ):
        outcome_metadata.write_metadata(
            spec.bucket, spec.key, {"scheduled_for": due_iso, "processing_params": params}
        )
    status = st.record_scheduled(
        spec.upload_id, _scheduled_fields(spec, info, due_iso, queue), due.timestamp()
    )
    logger.info("job scheduled for %s", due_iso)
    return {
        "status": "ok",
        "upload_id": spec.upload_id,
        "job_status": status,
        "scheduled_for": due_iso,
    }


def _scheduled_fields(
    spec: JobSpec, info: ObjectInfo, due_iso: str, queue: str | None = None
) -> dict[str, Any]:
    return {
        "service_id": spec.service_id,
        "source": spec.source,
        "params": spec.params_json(),
        "scheduled_for": due_iso,
        "queue": queue or job_queue(info.metadata),
    }


def release_due(*, app: Celery | None = None, now: float | None = None) -> dict[str, Any]:
    """Start every scheduled job that is due, each exactly once."""
    app = app or current_app
    now = time.time() if now is None else now
    released: list[str] = []
    failed = 0
    while True:
        due = st.due_uploads(now, RELEASE_PAGE)
        if not due:
            break
        for upload_id in due:
            # Every due member leaves the index here (claimed, or stale and dropped).
            if not st.claim_due(upload_id):
                continue
            state = st.load_or_empty(upload_id)
            try:
                params = state.job_params() or {}
                spec = JobSpec.from_params(state.service_id or "", upload_id, params)
            except (NotifyError, ValueError) as error:
                failed += 1
                logger.error("scheduled job %s has unusable parameters: %s", upload_id, error)
                st.finish(
                    upload_id,
                    st.FAILED,
                    {"error_code": "invalid_job_state", "error_message": str(error)},
                )
                continue
            queue = state.queue or queues.CSV_BATCHES
            app.send_task(queues.CSV_PROCESS_BATCH, kwargs=spec.task_kwargs(), queue=queue)
            released.append(upload_id)
    if released:
        logger.info("released %d scheduled jobs", len(released))
    return {"status": "ok", "released": len(released), "upload_ids": released, "failed": failed}


# --- cancel ------------------------------------------------------------------------------------


def cancel_job(service_id: str, upload_id: str) -> dict[str, Any]:
    """Cancel a scheduled job that has not started; failed result if it has."""
    require_uuid(service_id, "service_id")
    require_uuid(upload_id, "upload_id")
    for _ in range(3):  # the no-state path may race with a rebuild: look again
        state = st.load_job(upload_id)
        if state is not None:
            if state.service_id not in (None, service_id):
                raise _not_found(upload_id)
            previous = st.claim_cancel(upload_id)
            if previous is None:
                continue  # expired between the two reads
            return _after_claim(service_id, upload_id, previous, state)
        result = _cancel_without_state(service_id, upload_id)
        if result is not None:
            return result
    raise InvalidInput("The job changed while we cancelled it; try again.", code="job_busy")


def _after_claim(
    service_id: str, upload_id: str, previous: str, state: st.JobState
) -> dict[str, Any]:
    source = state.source or "csv-upload"
    if previous in (st.SCHEDULED, st.CANCELLED):
        # Write (or, for a repeat, make sure of) the outcome on the object.
        _write_cancelled(get_settings().bucket(source), csv_upload_key(service_id, upload_id))
        if previous == st.CANCELLED:
            return {
                "status": "skipped",
                "reason": "already_cancelled",
                "upload_id": upload_id,
                "job_status": st.CANCELLED,
            }
        logger.info("scheduled job cancelled")
        return {"status": "ok", "upload_id": upload_id, "job_status": st.CANCELLED}
    if previous in (st.QUEUED, st.RUNNING):
        raise InvalidInput(
            "The job has already started; only a scheduled job can be cancelled.",
            code="job_already_started",
        )
    if previous in (st.FINISHED, st.FAILED):
        raise InvalidInput(f"The job has already {previous}.", code="job_already_finished")
    raise _not_found(upload_id)


def _cancel_without_state(service_id: str, upload_id: str) -> dict[str, Any] | None:
    """Redis knows nothing (e.g. it lost its data): decide from the object's metadata."""
    key = csv_upload_key(service_id, upload_id)
    settings = get_settings()
    for source in SOURCES:
        info = head_or_none(settings.bucket(source), key)
        if info is None:
            continue
        status = info.metadata.get("processing_status")
        if status == st.CANCELLED:
            return {
                "status": "skipped",
                "reason": "already_cancelled",
                "upload_id": upload_id,
                "job_status": st.CANCELLED,
            }
        if status:
            raise InvalidInput(f"The job has already {status}.", code="job_already_finished")
        if not info.metadata.get("scheduled_for"):
            break
        fields = {"service_id": service_id, "source": source}
        if not st.create_cancelled(upload_id, fields):
            return None  # state appeared meanwhile: decide from it
        _write_cancelled(info.bucket, key)
        return {"status": "ok", "upload_id": upload_id, "job_status": st.CANCELLED}
    raise _not_found(upload_id)


def _write_cancelled(bucket: str, key: str) -> None:
    fields = outcome_metadata.outcome_fields(
        st.CANCELLED, total=0, dispatched=0, invalid=0, finished_at=st.now_iso()
    )
    try:
        outcome_metadata.write_outcome(bucket, key, fields)
    except S3NotFound:
        logger.warning("cancelled job's CSV is gone; nothing to record on it")


def _not_found(upload_id: str) -> InvalidInput:
    return InvalidInput(
        f"No scheduled job for upload {upload_id} in this service.", code="job_not_found"
    )


def scheduled_params(metadata: dict[str, str]) -> dict[str, Any] | None:
    """The job parameters recorded with a schedule, or None if they are missing or unreadable."""
    try:
        params = json.loads(metadata.get("processing_params") or "null")
    except ValueError:
        return None
    return params if isinstance(params, dict) else None
