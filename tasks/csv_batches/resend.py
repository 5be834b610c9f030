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
import uuid
from typing import Any

from celery import Celery

from storage.errors import S3NotFound, S3PreconditionFailed, TransientError
from storage.objects import head
from tasks.csv_batches import processing
from tasks.csv_batches import state as st
from tasks.csv_batches.spec import JobSpec
from tasks.csv_batches.validation.columns import FileError
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

_RENAMED = {
    "checkpoint": "resend_checkpoint",
    "dispatched": "resend_dispatched",
    "invalid": "resend_invalid",
}


class ResendHeartbeat(processing.Heartbeat):
    """The dispatch pass's heartbeat, writing its progress to ``resend_*`` fields."""

    def maybe(self, fields: dict[str, Any] | None = None) -> None:
        super().maybe(_renamed(fields))

    def beat(self, fields: dict[str, Any] | None = None) -> None:
        super().beat(_renamed(fields))


def _renamed(fields: dict[str, Any] | None) -> dict[str, Any] | None:
    if fields is None:
        return None
    return {_RENAMED.get(name, name): value for name, value in fields.items()}


def resend_job(spec: JobSpec, *, app: Celery | None = None) -> dict[str, Any]:
    """Run one requested re-send of a finished job's rows; returns the task's JSON result."""
    token = uuid.uuid4().hex
    if not st.acquire_lease(spec.upload_id, token, get_worker_settings().job_stale_seconds):
        logger.info("job busy elsewhere; this re-send delivery is skipped")
        return processing.already_done(spec.upload_id, st.read_job(spec.upload_id) or {})
    try:
        return _resend(spec, token, app)
    except processing.LeaseLost:
        logger.warning("lease lost to another runner; re-send stopped")
        return processing.already_done(spec.upload_id, st.read_job(spec.upload_id) or {})
    finally:
        st.release_lease(spec.upload_id, token)


def _resend(spec: JobSpec, token: str, app: Celery | None) -> dict[str, Any]:
    upload_id = spec.upload_id
    state = st.read_job(upload_id) or {}  # again, now that we hold the lease
    if state.get("status") != st.FINISHED or not state.get("resend"):
        return processing.already_done(upload_id, state)
    try:
        info = head(spec.bucket, spec.key)
    except S3NotFound:
        return _abandon(upload_id, state, "file_not_found", "the CSV file is gone")
    if info.etag not in {state.get("etag"), state.get("final_etag")}:
        return _abandon(upload_id, state, "file_changed", "the CSV file was replaced")
    sink_task = state.get("sink_task") or get_worker_settings().row_sink_task
    sink_queue = state.get("sink_queue") or get_worker_settings().row_sink_queue
    total = int(state.get("total") or 0)
    logger.warning(
        "re-sending the rows of finished job %s (re-send %s: %s dispatched, %s stored)",
        upload_id,
        state.get("resends"),
        state.get("dispatched"),
        state.get("stored") or 0,
    )
    st.begin_resend(upload_id)
    heartbeat = ResendHeartbeat(upload_id, token)
    try:
        counters = processing.dispatch(
            spec,
            info.etag,
            checkpoint=0,
            counters={"total": total, "dispatched": 0, "invalid": 0},
            heartbeat=heartbeat,
            app=app,
            sink_task=sink_task,
            sink_queue=sink_queue,
            max_rows=get_worker_settings().csv_max_rows,
        )
    except FileError as error:  # the same file passed before: rules changed since?
        return _abandon(upload_id, state, error.code, error.message)
    except S3PreconditionFailed as error:
        # Replaced between the HEAD and the read: the retry finds it changed and gives up.
        raise TransientError(error.message, code="file_changed") from error
    heartbeat.beat()  # still ours?
    if counters["dispatched"] != int(state.get("dispatched") or 0):
        logger.error(
            "re-send of job %s dispatched %d rows, the job %s",
            upload_id,
            counters["dispatched"],
            state.get("dispatched"),
        )
    st.end_resend(upload_id, {"resent_at": st.now_iso(), "resent_rows": counters["dispatched"]})
    return {
        "status": "ok",
        "reason": "resent",
        "upload_id": upload_id,
        "job_status": st.FINISHED,
        "rows_total": total,
        "rows_dispatched": int(state.get("dispatched") or 0),
        "rows_invalid": int(state.get("invalid") or 0),
        "rows_resent": counters["dispatched"],
        "resends": int(state.get("resends") or 0),
    }


def _abandon(upload_id: str, state: dict[str, str], code: str, why: str) -> dict[str, Any]:
    """Nothing can be re-sent: say so once, stop watching, leave the outcome as it is."""
    logger.error("cannot re-send the rows of job %s: %s", upload_id, why)
    st.end_resend(upload_id, {"resend_error": code})
    result = processing.already_done(upload_id, st.read_job(upload_id) or state)
    result["reason"] = "resend_impossible"
    result["resend_error"] = code
    return result
