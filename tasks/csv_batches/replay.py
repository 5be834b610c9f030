"""Dead letters of sink batches keep a reference, not recipients; replay rebuilds the rows.

A batch for ``notify.notifications.save_batch`` carries up to 1,000 recipients with their
personalisation. When one is dead-lettered (poison, or retries exhausted) the store keeps, for
days, only what is needed to make it again:

    {"service_id", "upload_id", "first_row", "last_row", "rows", "source_etag", "params"}

(``params``: the job's template id, type and placeholder names, options, source and sender:
no row data). ``notify-worker deadletter replay`` sends ``notify.csv.replay_rows`` with those
arguments: it reads the CSV pinned to the version the job read, validates the rows in the
range as the job did, and stores the valid ones through the built-in sink. Notification ids are
deterministic, so the rebuilt batch is the batch that failed, and a row already stored is not
stored twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from storage.errors import InvalidInput, NotifyError, S3NotFound
from storage.keys import require_uuid
from storage.objects import ObjectInfo, head, open_stream
from tasks.csv_batches import state as st
from tasks.csv_batches.fanout import MAX_BATCH_ROWS, BatchEncoder
from tasks.csv_batches.reader import CsvReader
from tasks.csv_batches.sink import save_batch
from tasks.csv_batches.spec import JobSpec
from tasks.csv_batches.validation.columns import ColumnLayout
from worker.runtime import deadletter, queues
from worker.runtime.app import app
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

REPLAY_ROWS = queues.CSV_REPLAY_ROWS


def batch_reference(kwargs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The dead letter of a sink batch: ``(replay task, reference)``. Never raises, never
    returns a recipient or a personalisation value."""
    batch = kwargs.get("batch")
    reference: dict[str, Any] = {}
    try:
        if not isinstance(batch, Mapping):
            raise InvalidInput("not a batch")
        reference["service_id"] = require_uuid(batch.get("service_id"), "service_id")
        reference["upload_id"] = require_uuid(batch.get("upload_id"), "upload_id")
        rows = batch.get("rows")
        numbers = [
            row["row_number"]
            for row in (rows if isinstance(rows, list) else [])
            if isinstance(row, Mapping) and type(row.get("row_number")) is int
        ]
        if not numbers:
            raise InvalidInput("no row numbers")
        reference.update(first_row=min(numbers), last_row=max(numbers), rows=len(numbers))
        job = st.load_job(reference["upload_id"])
        if job is not None:
            if job.etag:
                reference["source_etag"] = job.etag.strip('"')
            if job.params:
                reference["params"] = json.loads(job.params)
    except (NotifyError, ValueError, TypeError) as error:
        # Nothing to rebuild from: keep the ids we could read (or none), never the rows.
        logger.error("a dead-lettered sink batch cannot be replayed: %s", error)
        reference["unreplayable"] = True
    return REPLAY_ROWS, reference


deadletter.register_reference(queues.NOTIFICATIONS_SAVE_BATCH, batch_reference)


def replay_rows(
    service_id: str,
    upload_id: str,
    first_row: int,
    last_row: int,
    rows: int | None = None,
    source_etag: str | None = None,
    params: Mapping[str, Any] | None = None,
    unreplayable: bool = False,
) -> dict[str, Any]:
    """Rebuild a dead-lettered batch from the job's CSV and store it; returns the result."""
    if unreplayable:
        raise InvalidInput(
            "This dead letter recorded no job or row range (the batch was malformed).",
            code="unreplayable",
        )
    require_uuid(service_id, "service_id")
    require_uuid(upload_id, "upload_id")
    if type(first_row) is not int or type(last_row) is not int or not 1 <= first_row <= last_row:
        raise InvalidInput("first_row and last_row must be row numbers, first <= last.")
    job = st.load_job(upload_id)
    if params is None and job is not None and job.params:
        params = json.loads(job.params)
    info = _source(service_id, upload_id, params)
    if params is None:
        params = _metadata_params(info)
    spec = JobSpec.from_params(service_id, upload_id, params)
    _check_version(info, source_etag, job)
    batch = rebuild_batch(spec, info.etag, first_row, last_row)
    if not batch["rows"]:
        raise InvalidInput(f"No valid row between rows {first_row} and {last_row}.")
    if rows is not None and len(batch["rows"]) != rows:
        logger.warning("rebuilt %d rows, the dead batch had %d", len(batch["rows"]), rows)
    saved = save_batch(batch)
    logger.info("replayed rows %d-%d: %d stored", first_row, last_row, saved["stored"])
    return {**saved, "first_row": first_row, "last_row": last_row}


def _source(service_id: str, upload_id: str, params: Mapping[str, Any] | None) -> ObjectInfo:
    probe = JobSpec.from_params(
        service_id, upload_id, {"template": _any_template(), **(params or {})}
    )
    try:
        return head(probe.bucket, probe.key)
    except S3NotFound:
        raise InvalidInput(
            f"The CSV file of upload {upload_id} is gone: its rows cannot be rebuilt.",
            code="file_not_found",
        ) from None


def _any_template() -> dict[str, Any]:
    # Only to find the bucket and key when the job's params are unknown yet.
    return {"id": "00000000-0000-0000-0000-000000000000", "type": "sms", "placeholders": []}


def _metadata_params(info: ObjectInfo) -> dict[str, Any]:
    raw = info.metadata.get("processing_params")
    if not raw:
        raise InvalidInput("The job's template and options are recorded nowhere any more.")
    return json.loads(raw)


def _check_version(info: ObjectInfo, source_etag: str | None, job: st.JobState | None) -> None:
    """The object must be the version the job read (its outcome rewrite may change the ETag,
    which the outcome records as ``processing_source_etag``)."""
    if not source_etag:
        return
    known = {
        info.etag.strip('"'),
        (info.metadata.get("processing_source_etag") or "").strip('"'),
        ((job.final_etag or "") if job else "").strip('"'),
    }
    if source_etag.strip('"') not in known:
        raise InvalidInput(
            "The CSV file was replaced since the job read it: its rows are not rebuilt.",
            code="file_changed",
        )


def rebuild_batch(spec: JobSpec, etag: str, first_row: int, last_row: int) -> dict[str, Any]:
    """The sink batch of the job's valid rows numbered ``first_row``..``last_row``, exactly as
    the dispatch pass built it (same validation, same notification ids)."""
    if last_row - first_row >= get_worker_settings().csv_max_rows:
        raise InvalidInput("The row range is longer than a job can be.")
    base = {
        "service_id": spec.service_id,
        "upload_id": spec.upload_id,
        "template_id": spec.template_id,
        "template_type": spec.template_type,
        "sender_id": spec.sender_id,
    }
    _, body = open_stream(spec.bucket, spec.key, if_match=etag)
    encoded: list[str] = []
    with CsvReader(body, max_rows=get_worker_settings().csv_max_rows) as reader:
        layout = ColumnLayout.from_header(
            reader.header, template_type=spec.template_type, placeholders=list(spec.placeholders)
        )
        valid_row = layout.valid_row_checker(**spec.options)
        encoder = BatchEncoder(base, layout.personalisation_keys)
        for row_number, cells in reader:
            if row_number < first_row:
                continue
            if row_number > last_row:
                break
            valid = valid_row(cells)
            if valid is not None:
                encoded.append(encoder.row(row_number, valid))
                if len(encoded) > MAX_BATCH_ROWS:
                    raise InvalidInput("The row range holds more rows than one batch.")
    return {**base, "rows": json.loads("[" + ",".join(encoded) + "]")}


@app.task(name=REPLAY_ROWS, queue=queues.CSV_BATCHES)
def replay_rows_task(
    service_id: str,
    upload_id: str,
    first_row: int,
    last_row: int,
    rows: int | None = None,
    source_etag: str | None = None,
    params: dict[str, Any] | None = None,
    unreplayable: bool = False,
) -> dict[str, Any]:
    return replay_rows(
        service_id,
        upload_id,
        first_row,
        last_row,
        rows=rows,
        source_etag=source_etag,
        params=params,
        unreplayable=unreplayable,
    )
