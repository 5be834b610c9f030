"""The core of ``notify.csv.process_batch``: two streaming passes, checkpoints, one outcome.

1. **Scan** (pass 1): read the whole object, pinned to the ETag from the first HEAD, checking
   everything that can fail the *file* (encoding, NULs, record and column limits, header and
   required columns, row count). A file-level error fails the job before anything is sent.
   The scan is cheap (no recipient validation), and its row count decides the bulk queue.
2. **Dispatch** (pass 2): read it again, pinned to the same ETag; validate each row; valid rows
   go to the row sink in batches of at most 1,000 over one broker connection. After each
   batch the checkpoint (last row handed to the broker) and the counters are written to Redis
   in one HSET, so a job killed at any line resumes after its checkpoint; a batch re-sent after
   a crash between publish and checkpoint is harmless because notification ids are
   deterministic and the sink is idempotent.
3. **Outcome**: written once to the object's metadata, then to Redis (with expiries).

Only the holder of the job's lease works on it; a second delivery returns ``skipped``.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from storage.errors import S3NotFound, S3PreconditionFailed, TransientError
from storage.keys import isoformat
from storage.objects import ObjectInfo, head
from tasks.csv_batches import fairness, outcome_metadata, scheduling
from tasks.csv_batches import state as st
from tasks.csv_batches.dispatch import dispatch, scan
from tasks.csv_batches.lease import JobLease, LeaseLost
from tasks.csv_batches.resend import resend_job
from tasks.csv_batches.spec import JobSpec
from tasks.csv_batches.state import Counters
from tasks.csv_batches.validation.columns import FileError
from worker.runtime.logs import carried_request_id, current_request_id
from worker.runtime.queues import bulk_queue
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)


# --- entry point -------------------------------------------------------------------------------


def process_job(
    spec: JobSpec,
    *,
    scheduled_for: str | None = None,
    app: Celery | None = None,
    queue: str | None = None,
) -> dict[str, Any]:
    """Run (or schedule, or skip) one CSV job; returns the task's JSON result.

    ``queue`` is the queue the job's message came on: recorded so that a re-drive goes there.
    On a normal-lane queue the job first claims one of its service's slots, or raises
    ``fairness.Deferred`` (the task moves it to the bulk lane; see fairness.py).
    """
    state = st.load_or_empty(spec.upload_id)
    if state.done:
        if state.resend:  # the reconciler found batches the broker lost (recovery.py)
            return resend_job(spec, app=app)
        return state.skipped("already_done")
    if scheduled_for is not None and state.status not in (st.QUEUED, st.RUNNING):
        due = scheduling.parse_due(scheduled_for)
        if due.timestamp() > time.time():
            return scheduling.schedule_job(spec, due, queue=queue)

    slot = fairness.on_normal_lane(queue)
    if slot:
        try:
            fairness.claim_slot(spec.service_id, spec.upload_id, str(queue))
        except fairness.Deferred as deferred:
            st.move_queued(spec.upload_id, deferred.queue)  # where the reconciler looks
            raise
    try:
        with JobLease.hold(spec.upload_id) as lease:
            if lease is None:
                # The runner that holds the lease holds the slot (the same member) too.
                logger.info("job already running elsewhere; this delivery is skipped")
                return st.load_or_empty(spec.upload_id).skipped("already_running")
            try:
                if slot:
                    lease.on_refresh = lambda: fairness.touch_slot(spec.service_id, spec.upload_id)
                return _run(spec, lease, app, queue)
            finally:
                if slot:  # it counts for one more window after it ends
                    fairness.touch_slot(spec.service_id, spec.upload_id)
    except LeaseLost:
        logger.warning("lease lost to another runner; stopping without writing")
        return st.load_or_empty(spec.upload_id).skipped("lease_lost")


# --- one run -----------------------------------------------------------------------------------


def _run(spec: JobSpec, lease: JobLease, app: Celery | None, queue: str | None) -> dict[str, Any]:
    settings = get_worker_settings()
    upload_id = spec.upload_id
    state = st.load_or_empty(upload_id)  # again, now that we hold the lease
    if state.done:
        return state.skipped("already_done")

    try:
        info = head(spec.bucket, spec.key)
    except S3NotFound:
        message = f"The CSV file for upload {upload_id} does not exist in {spec.source}."
        st.finish(upload_id, st.FAILED, {"error_code": "file_not_found", "error_message": message})
        return {"status": "failed", "error_code": "file_not_found", "error_message": message}

    recorded = outcome_metadata.recorded_outcome(info.metadata)
    if recorded is not None:
        # The outcome is on the object already (Redis may have lost it, or we died just after
        # writing it): make Redis agree and change nothing else.
        if state.status != recorded["job_status"]:
            st.finish(upload_id, str(recorded["job_status"]), _recorded_fields(recorded))
        return {"status": "skipped", "reason": "already_done", "upload_id": upload_id, **recorded}

    running = state.status == st.RUNNING
    resuming = running and state.etag == info.etag
    if running and not resuming and state.checkpoint > 0:
        return _fail(
            spec,
            info,
            FileError(
                "file_changed",
                "The CSV file changed while its job was running; some rows had already been "
                "sent. Upload it again as a new job.",
            ),
            counters=state.counters,
        )
    checkpoint = state.checkpoint if resuming else 0
    started = st.start_running(
        upload_id,
        {
            "service_id": spec.service_id,
            "source": spec.source,
            "params": spec.params_json(),
            "etag": info.etag,
            "size": info.size,
            "runner": lease.token,
            **({"queue": queue} if queue else {}),
            **_request_id_field(),
            **({} if resuming else {"checkpoint": 0, "dispatched": 0, "invalid": 0}),
        },
    )
    if not started:  # cancelled (or ended) between our read and now
        return st.load_or_empty(upload_id).skipped("already_done")
    if resuming:
        logger.info("resuming after row %d", checkpoint)

    total = state.total if resuming and state.scanned else None
    try:
        if total is None:
            total = scan(spec, info.etag, settings.csv_max_rows, lease)
            bulk = total > settings.bulk_threshold_rows
            st.update(upload_id, {"total": total, "scanned": 1, "bulk": int(bulk)})
        counters = Counters(total, state.dispatched, state.invalid) if resuming else Counters(total)
        if checkpoint < total:
            # A big job, or one on a bulk lane (sent there by the web app, or by fairness),
            # sends its batches to the sink's bulk lane.
            bulk = total > settings.bulk_threshold_rows or fairness.on_bulk_lane(queue)
            sink_queue = bulk_queue(settings.row_sink_queue) if bulk else settings.row_sink_queue
            st.note_dispatch(
                upload_id,
                sink_task=settings.row_sink_task,
                sink_queue=sink_queue,
                fresh=checkpoint == 0,
            )
            counters = dispatch(
                spec,
                info.etag,
                checkpoint=checkpoint,
                counters=counters,
                lease=lease,
                app=app,
                sink_task=settings.row_sink_task,
                sink_queue=sink_queue,
                max_rows=settings.csv_max_rows,
            )
    except FileError as error:
        return _fail(spec, info, error, counters=st.load_or_empty(upload_id).counters)
    except S3PreconditionFailed as error:
        # The object changed between passes: a new run starts over on the new version (or
        # fails with file_changed if rows were already sent).
        raise TransientError(error.message, code="file_changed") from error

    lease.confirm()  # still ours? (else another runner finishes the job)
    return _finish(spec, info, counters)


# --- endings -----------------------------------------------------------------------------------


def _recorded_fields(recorded: dict[str, Any]) -> dict[str, Any]:
    """The job hash's fields for an outcome as the object records it."""
    return {
        "total": recorded.get("rows_total"),
        "dispatched": recorded.get("rows_dispatched"),
        "invalid": recorded.get("rows_invalid"),
        "finished_at": recorded.get("finished_at"),
        "error_code": recorded.get("error_code", ""),
    }


def _write_outcome(
    spec: JobSpec,
    info: ObjectInfo,
    status: str,
    counters: Counters,
    error_code: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The outcome onto the object (once); returns it as recorded there, and the new ETag."""
    fields = outcome_metadata.outcome_fields(
        status,
        **counters.fields(),
        finished_at=isoformat(datetime.now(UTC)),
        params_json=spec.params_json(),
        source_etag=info.etag,
        **({"error_code": error_code} if error_code else {}),
    )
    metadata, new_etag = outcome_metadata.write_outcome(spec.bucket, spec.key, fields)
    return outcome_metadata.recorded_outcome(metadata) or {}, new_etag


def _finish(spec: JobSpec, info: ObjectInfo, counters: Counters) -> dict[str, Any]:
    recorded, new_etag = _write_outcome(spec, info, st.FINISHED, counters)
    fields = _recorded_fields(recorded)
    del fields["error_code"]
    fields.update(checkpoint=counters.total, final_etag=new_etag)
    st.finish(spec.upload_id, str(recorded.get("job_status", st.FINISHED)), fields)
    logger.info(
        "job %s: %s rows, %s dispatched, %s invalid",
        recorded.get("job_status"),
        recorded.get("rows_total"),
        recorded.get("rows_dispatched"),
        recorded.get("rows_invalid"),
    )
    result: dict[str, Any] = {"status": "ok", "upload_id": spec.upload_id, **recorded}
    if recorded.get("job_status") == st.FAILED:
        result["status"] = "failed"
        result.setdefault("error_message", "The job failed; see processing_error_code.")
    return result


def _fail(
    spec: JobSpec, info: ObjectInfo, error: FileError, *, counters: Counters
) -> dict[str, Any]:
    """A file-level error: record it on the object and in Redis; the job is over."""
    logger.warning("job failed: %s (%s)", error.code, error.message)
    recorded, new_etag = _write_outcome(spec, info, st.FAILED, counters, error.code)
    fields = _recorded_fields(recorded)
    fields.update(error_message=error.message, final_etag=new_etag)
    st.finish(spec.upload_id, str(recorded.get("job_status", st.FAILED)), fields)
    return {
        "status": "failed",
        "upload_id": spec.upload_id,
        "error_message": error.message,
        **recorded,
    }


def _request_id_field() -> dict[str, str]:
    """The sender's request id, kept with the job so a re-drive or re-send carries it on."""
    request_id = carried_request_id(current_request_id())
    return {"request_id": request_id} if request_id else {}
