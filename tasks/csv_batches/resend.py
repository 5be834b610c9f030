"""Re-send a finished job's rows when the broker lost some of its sink batches.

The reconciler (recovery.resend_lost_batches) flags a finished job (``resend=1`` in its hash)
and sends ``notify.csv.process_batch`` again; ``processing.process_job`` sees the flag and comes
here instead of answering ``already_done``. The pass:

* takes the job's lease (one runner per job, as a normal run);
* checks the object is the one the job read (its ETag before or after the outcome was written):
  a replaced file is never re-sent;
* runs the same dispatch pass from row 1, to the sink task and queue the job used, recording the
  broker's current run_id first. Progress goes to ``resend_*`` fields: the job's own counters
  and outcome (already on the object) are not touched;
* clears the flag and puts the job back under watch, so the reconciler checks again that the
  rows arrived.

Deterministic notification ids make every repeated row harmless: the built-in sink stores and
counts only new ones; an external sink must ignore a notification_id it already has.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery

from storage.errors import S3NotFound, S3PreconditionFailed, TransientError
from storage.objects import head
from tasks.csv_batches import state as st
from tasks.csv_batches.dispatch import dispatch
from tasks.csv_batches.lease import JobLease, LeaseLost
from tasks.csv_batches.spec import JobSpec
from tasks.csv_batches.state import Counters, JobState
from tasks.csv_batches.validation.columns import FileError
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)


def resend_job(spec: JobSpec, *, app: Celery | None = None) -> dict[str, Any]:
    """Run one requested re-send of a finished job's rows; returns the task's JSON result."""
    try:
        with JobLease.hold(spec.upload_id, progress_prefix="resend_") as lease:
            if lease is None:
                logger.info("job busy elsewhere; this re-send delivery is skipped")
                return st.load_or_empty(spec.upload_id).skipped("already_done")
            return _resend(spec, lease, app)
    except LeaseLost:
        logger.warning("lease lost to another runner; re-send stopped")
        return st.load_or_empty(spec.upload_id).skipped("already_done")


def _resend(spec: JobSpec, lease: JobLease, app: Celery | None) -> dict[str, Any]:
    upload_id = spec.upload_id
    state = st.load_or_empty(upload_id)  # again, now that we hold the lease
    if state.status != st.FINISHED or not state.resend:
        return state.skipped("already_done")
    try:
        info = head(spec.bucket, spec.key)
    except S3NotFound:
        return _abandon(state, "file_not_found", "the CSV file is gone")
    if info.etag not in {state.etag, state.final_etag}:
        return _abandon(state, "file_changed", "the CSV file was replaced")
    settings = get_worker_settings()
    sink_task = state.sink_task or settings.row_sink_task
    sink_queue = state.sink_queue or settings.row_sink_queue
    logger.warning(
        "re-sending the rows of finished job %s (re-send %s: %s dispatched, %s stored)",
        upload_id,
        state.resends,
        state.dispatched,
        state.stored,
    )
    st.begin_resend(upload_id)
    try:
        counters = dispatch(
            spec,
            info.etag,
            checkpoint=0,
            counters=Counters(state.total),
            lease=lease,
            app=app,
            sink_task=sink_task,
            sink_queue=sink_queue,
            max_rows=settings.csv_max_rows,
        )
    except FileError as error:  # the same file passed before: rules changed since?
        return _abandon(state, error.code, error.message)
    except S3PreconditionFailed as error:
        # Replaced between the HEAD and the read: the retry finds it changed and gives up.
        raise TransientError(error.message, code="file_changed") from error
    lease.confirm()  # still ours?
    if counters.dispatched != state.dispatched:
        logger.error(
            "re-send of job %s dispatched %d rows, the job %s",
            upload_id,
            counters.dispatched,
            state.dispatched,
        )
    st.end_resend(upload_id, {"resent_at": st.now_iso(), "resent_rows": counters.dispatched})
    return {
        "status": "ok",
        "reason": "resent",
        "upload_id": upload_id,
        "job_status": st.FINISHED,
        "rows_total": state.total,
        "rows_dispatched": state.dispatched,
        "rows_invalid": state.invalid,
        "rows_resent": counters.dispatched,
        "resends": state.resends,
    }


def _abandon(state: JobState, code: str, why: str) -> dict[str, Any]:
    """Nothing can be re-sent: say so once, stop watching, leave the outcome as it is."""
    logger.error("cannot re-send the rows of job %s: %s", state.upload_id, why)
    st.end_resend(state.upload_id, {"resend_error": code})
    result = (st.load_job(state.upload_id) or state).skipped("already_done")
    result["reason"] = "resend_impossible"
    result["resend_error"] = code
    return result
