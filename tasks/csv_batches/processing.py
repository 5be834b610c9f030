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
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import Celery, current_app

from storage.errors import S3NotFound, S3PreconditionFailed, TransientError
from storage.keys import isoformat
from storage.objects import ObjectInfo, head, open_stream
from tasks.csv_batches import outcome_metadata, scheduling
from tasks.csv_batches import state as st
from tasks.csv_batches.fanout import MAX_BATCH_ROWS, BatchEncoder, BatchPublisher
from tasks.csv_batches.reader import CsvReader
from tasks.csv_batches.spec import JobSpec
from tasks.csv_batches.validation.columns import ColumnLayout, FileError
from worker.runtime.queues import bulk_queue
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_ROWS = 4096  # how often long stretches without a publish look at the clock


class LeaseLost(Exception):
    """Our lease expired and another runner holds the job now: stop without writing."""


class Heartbeat:
    """Keeps the job's lease and heartbeat fresh without touching Redis on every row."""

    def __init__(self, upload_id: str, token: str) -> None:
        settings = get_worker_settings()
        self.upload_id = upload_id
        self.token = token
        self.ttl = settings.job_stale_seconds
        # Several beats per staleness period, so one slow batch never looks like a dead job.
        self.interval = max(0.2, min(5.0, self.ttl / 4))
        self._next = time.monotonic() + self.interval

    def due(self) -> bool:
        return time.monotonic() >= self._next

    def maybe(self, fields: dict[str, Any] | None = None) -> None:
        if fields is not None:
            st.update(self.upload_id, fields)
        if time.monotonic() >= self._next:
            self.beat(None if fields is not None else {})

    def beat(self, fields: dict[str, Any] | None = None) -> None:
        """Refresh the lease (or take it back if nobody else did) and the heartbeat."""
        if not st.refresh_lease(self.upload_id, self.token, self.ttl) and not st.acquire_lease(
            self.upload_id, self.token, self.ttl
        ):
            raise LeaseLost(self.upload_id)
        if fields is not None:
            st.update(self.upload_id, fields)
        self._next = time.monotonic() + self.interval


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
    """
    state = st.read_job(spec.upload_id) or {}
    status = state.get("status")
    if status in st.DONE_STATUSES:
        if state.get("resend"):  # the reconciler found batches the broker lost (recovery.py)
            from tasks.csv_batches.resend import resend_job

            return resend_job(spec, app=app)
        return already_done(spec.upload_id, state)
    if scheduled_for is not None and status not in (st.QUEUED, st.RUNNING):
        due = scheduling.parse_due(scheduled_for)
        if due.timestamp() > time.time():
            return scheduling.schedule_job(spec, due, queue=queue)

    token = uuid.uuid4().hex
    if not st.acquire_lease(spec.upload_id, token, get_worker_settings().job_stale_seconds):
        logger.info("job already running elsewhere; this delivery is skipped")
        return _skipped("already_running", spec.upload_id, st.read_job(spec.upload_id) or {})
    try:
        return _run(spec, token, app, queue)
    except LeaseLost:
        logger.warning("lease lost to another runner; stopping without writing")
        return _skipped("lease_lost", spec.upload_id, st.read_job(spec.upload_id) or {})
    finally:
        st.release_lease(spec.upload_id, token)


def already_done(upload_id: str, state: dict[str, str]) -> dict[str, Any]:
    return _skipped("already_done", upload_id, state)


def _skipped(reason: str, upload_id: str, state: dict[str, str]) -> dict[str, Any]:
    progress = st.progress_from_state(upload_id, state)
    result: dict[str, Any] = {
        "status": "skipped",
        "reason": reason,
        "upload_id": upload_id,
        "job_status": progress["status"],
        "rows_total": progress["total"],
        "rows_dispatched": progress["dispatched"],
        "rows_invalid": progress["invalid"],
    }
    if progress["finished_at"]:
        result["finished_at"] = progress["finished_at"]
    if progress["error_code"]:
        result["error_code"] = progress["error_code"]
    return result


# --- one run -----------------------------------------------------------------------------------


def _run(spec: JobSpec, token: str, app: Celery | None, queue: str | None) -> dict[str, Any]:
    settings = get_worker_settings()
    upload_id = spec.upload_id
    state = st.read_job(upload_id) or {}  # again, now that we hold the lease
    if state.get("status") in st.DONE_STATUSES:
        return already_done(upload_id, state)

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
        _finish_state_from(upload_id, recorded, state)
        return {"status": "skipped", "reason": "already_done", "upload_id": upload_id, **recorded}

    checkpoint = int(state.get("checkpoint") or 0)
    resuming = state.get("status") == st.RUNNING and state.get("etag") == info.etag
    if state.get("status") == st.RUNNING and not resuming and checkpoint > 0:
        return _fail(
            spec,
            info,
            FileError(
                "file_changed",
                "The CSV file changed while its job was running; some rows had already been "
                "sent. Upload it again as a new job.",
            ),
            counters={k: int(state.get(k) or 0) for k in ("total", "dispatched", "invalid")},
        )
    if not resuming:
        checkpoint = 0
    started = st.start_running(
        upload_id,
        {
            "service_id": spec.service_id,
            "source": spec.source,
            "params": spec.params_json(),
            "etag": info.etag,
            "size": info.size,
            "runner": token,
            **({"queue": queue} if queue else {}),
            **({} if resuming else {"checkpoint": 0, "dispatched": 0, "invalid": 0}),
        },
    )
    if not started:  # cancelled (or ended) between our read and now
        return already_done(upload_id, st.read_job(upload_id) or {})
    heartbeat = Heartbeat(upload_id, token)
    if resuming:
        logger.info("resuming after row %d", checkpoint)

    total = int(state["total"]) if resuming and state.get("scanned") == "1" else None
    try:
        if total is None:
            total = scan(spec, info.etag, settings.csv_max_rows, heartbeat)
            bulk = total > settings.bulk_threshold_rows
            st.update(upload_id, {"total": total, "scanned": 1, "bulk": int(bulk)})
        counters = {
            "total": total,
            "dispatched": int(state.get("dispatched") or 0) if resuming else 0,
            "invalid": int(state.get("invalid") or 0) if resuming else 0,
        }
        if checkpoint < total:
            bulk = total > settings.bulk_threshold_rows
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
                heartbeat=heartbeat,
                app=app,
                sink_task=settings.row_sink_task,
                sink_queue=sink_queue,
                max_rows=settings.csv_max_rows,
            )
    except FileError as error:
        return _fail(spec, info, error, counters=_counters_now(upload_id))
    except S3PreconditionFailed as error:
        # The object changed between passes: a new run starts over on the new version (or
        # fails with file_changed if rows were already sent).
        raise TransientError(error.message, code="file_changed") from error

    heartbeat.beat()  # still ours? (else another runner finishes the job)
    return _finish(spec, info, counters)


def _counters_now(upload_id: str) -> dict[str, int]:
    state = st.read_job(upload_id) or {}
    return {k: int(state.get(k) or 0) for k in ("total", "dispatched", "invalid")}


def scan(spec: JobSpec, etag: str, max_rows: int, heartbeat: Heartbeat | None = None) -> int:
    """Pass 1: every file-level check; returns the number of rows. Raises ``FileError``."""
    _, body = open_stream(spec.bucket, spec.key, if_match=etag)
    with CsvReader(body, max_rows=max_rows) as reader:
        ColumnLayout.from_header(
            reader.header, template_type=spec.template_type, placeholders=list(spec.placeholders)
        )
        rows = 0
        next_look = HEARTBEAT_EVERY_ROWS
        # Counts only: simple blocks of rows are checked in bulk, without splitting cells.
        for rows, _ in reader.counted():
            if rows >= next_look:
                next_look = rows + HEARTBEAT_EVERY_ROWS
                if heartbeat is not None and heartbeat.due():
                    heartbeat.beat({})
        return rows


def dispatch(
    spec: JobSpec,
    etag: str,
    *,
    checkpoint: int,
    counters: dict[str, int],
    heartbeat: Heartbeat,
    app: Celery | None,
    sink_task: str,
    sink_queue: str,
    max_rows: int,
) -> dict[str, int]:
    """Pass 2: validate rows after ``checkpoint`` and publish the valid ones in batches."""
    app = app or current_app
    upload_id = spec.upload_id
    dispatched = counters["dispatched"]
    invalid = counters["invalid"]
    base = {
        "service_id": spec.service_id,
        "upload_id": upload_id,
        "template_id": spec.template_id,
        "template_type": spec.template_type,
        "sender_id": spec.sender_id,
    }
    _, body = open_stream(spec.bucket, spec.key, if_match=etag)
    with (
        CsvReader(body, max_rows=max_rows) as reader,
        BatchPublisher(app, sink_task, sink_queue) as publisher,
    ):
        layout = ColumnLayout.from_header(
            reader.header, template_type=spec.template_type, placeholders=list(spec.placeholders)
        )
        # check_row's verdict without its RowCheck; valid rows become JSON text at once,
        # never dicts (see fanout.BatchEncoder).
        valid_row = layout.valid_row_checker(**spec.options)
        encoder = BatchEncoder(base, layout.personalisation_keys)
        encode_row = encoder.row
        rows: list[str] = []
        row_number = 0
        for row_number, cells in reader:
            if row_number <= checkpoint:
                continue  # handed to the broker before a restart
            valid = valid_row(cells)
            if valid is not None:
                rows.append(encode_row(row_number, valid))
                if len(rows) >= MAX_BATCH_ROWS:
                    publisher.publish_encoded(encoder.body(rows), len(rows))
                    dispatched += len(rows)
                    rows = []
                    heartbeat.maybe(
                        {"checkpoint": row_number, "dispatched": dispatched, "invalid": invalid}
                    )
            else:
                invalid += 1
                if not row_number % HEARTBEAT_EVERY_ROWS and heartbeat.due():
                    heartbeat.beat({})
        if rows:
            publisher.publish_encoded(encoder.body(rows), len(rows))
            dispatched += len(rows)
        final = {"checkpoint": max(row_number, checkpoint), "dispatched": dispatched}
        heartbeat.maybe({**final, "invalid": invalid})
    logger.info(
        "dispatched %d rows in %d batches to %s (%d invalid)",
        dispatched - counters["dispatched"],
        publisher.messages,
        sink_queue,
        invalid,
    )
    return {"total": counters["total"], "dispatched": dispatched, "invalid": invalid}


# --- endings -----------------------------------------------------------------------------------


def _finish(spec: JobSpec, info: ObjectInfo, counters: dict[str, int]) -> dict[str, Any]:
    finished_at = isoformat(datetime.now(UTC))
    fields = outcome_metadata.outcome_fields(
        st.FINISHED,
        total=counters["total"],
        dispatched=counters["dispatched"],
        invalid=counters["invalid"],
        finished_at=finished_at,
        params_json=spec.params_json(),
        source_etag=info.etag,
    )
    metadata, new_etag = outcome_metadata.write_outcome(spec.bucket, spec.key, fields)
    recorded = outcome_metadata.recorded_outcome(metadata) or {}
    state = {
        "total": recorded.get("rows_total"),
        "dispatched": recorded.get("rows_dispatched"),
        "invalid": recorded.get("rows_invalid"),
        "checkpoint": counters["total"],
        "finished_at": recorded.get("finished_at"),
        "final_etag": new_etag,
    }
    st.finish(spec.upload_id, str(recorded.get("job_status", st.FINISHED)), state)
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
    spec: JobSpec, info: ObjectInfo, error: FileError, *, counters: dict[str, int]
) -> dict[str, Any]:
    """A file-level error: record it on the object and in Redis; the job is over."""
    logger.warning("job failed: %s (%s)", error.code, error.message)
    fields = outcome_metadata.outcome_fields(
        st.FAILED,
        total=counters.get("total", 0),
        dispatched=counters.get("dispatched", 0),
        invalid=counters.get("invalid", 0),
        finished_at=isoformat(datetime.now(UTC)),
        error_code=error.code,
        params_json=spec.params_json(),
        source_etag=info.etag,
    )
    metadata, new_etag = outcome_metadata.write_outcome(spec.bucket, spec.key, fields)
    recorded = outcome_metadata.recorded_outcome(metadata) or {}
    st.finish(
        spec.upload_id,
        str(recorded.get("job_status", st.FAILED)),
        {
            "total": recorded.get("rows_total"),
            "dispatched": recorded.get("rows_dispatched"),
            "invalid": recorded.get("rows_invalid"),
            "finished_at": recorded.get("finished_at"),
            "error_code": recorded.get("error_code", ""),
            "error_message": error.message,
            "final_etag": new_etag,
        },
    )
    return {
        "status": "failed",
        "upload_id": spec.upload_id,
        "error_message": error.message,
        **recorded,
    }


def _finish_state_from(upload_id: str, recorded: dict[str, Any], state: dict[str, str]) -> None:
    if state.get("status") == recorded["job_status"]:
        return
    st.finish(
        upload_id,
        str(recorded["job_status"]),
        {
            "total": recorded.get("rows_total"),
            "dispatched": recorded.get("rows_dispatched"),
            "invalid": recorded.get("rows_invalid"),
            "finished_at": recorded.get("finished_at"),
            "error_code": recorded.get("error_code", ""),
        },
    )
