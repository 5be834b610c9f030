"""The two streaming passes over a job's CSV object, shared by a run and a re-send.

* ``scan`` (pass 1): every check that can fail the *file*, no recipient validation; returns the
  row count.
* ``dispatch`` (pass 2): validate the rows after a checkpoint and publish the valid ones in
  batches of at most 1,000 over one producer, recording the checkpoint after each batch.

Both read the object pinned to one ETag, and keep the job's lease alive as they go.
"""

from __future__ import annotations

import logging

from celery import Celery, current_app

from storage.objects import open_stream
from tasks.csv_batches.fanout import MAX_BATCH_ROWS, BatchEncoder, BatchPublisher
from tasks.csv_batches.lease import JobLease, Progress
from tasks.csv_batches.reader import CsvReader
from tasks.csv_batches.spec import JobSpec
from tasks.csv_batches.state import Counters
from tasks.csv_batches.validation.columns import ColumnLayout

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_ROWS = 4096  # how often long stretches without a publish look at the clock


def scan(spec: JobSpec, etag: str, max_rows: int, lease: JobLease | None = None) -> int:
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
                if lease is not None:
                    lease.keep_alive()
        return rows


def dispatch(
    spec: JobSpec,
    etag: str,
    *,
    checkpoint: int,
    counters: Counters,
    lease: JobLease,
    app: Celery | None,
    sink_task: str,
    sink_queue: str,
    max_rows: int,
) -> Counters:
    """Pass 2: validate rows after ``checkpoint`` and publish the valid ones in batches."""
    app = app or current_app
    upload_id = spec.upload_id
    dispatched = counters.dispatched
    invalid = counters.invalid
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
                    lease.record(Progress(row_number, dispatched, invalid))
            else:
                invalid += 1
                if not row_number % HEARTBEAT_EVERY_ROWS:
                    lease.keep_alive()
        if rows:
            publisher.publish_encoded(encoder.body(rows), len(rows))
            dispatched += len(rows)
        lease.record(Progress(max(row_number, checkpoint), dispatched, invalid))
    logger.info(
        "dispatched %d rows in %d batches to %s (%d invalid)",
        dispatched - counters.dispatched,
        publisher.messages,
        sink_queue,
        invalid,
    )
    return Counters(counters.total, dispatched, invalid)
