"""Per-row outcomes of a finished job, for the ``job-outcome`` report.

Nothing per row is stored while a job runs (100k outcomes per job would cost more than the
job). Validation is deterministic, so the outcomes are rebuilt on demand: the same object,
read again (pinned to one ETag for the whole read), through the same reader and checks, with
the job's recorded parameters — from Redis, or from the object's ``processing_params``
metadata once Redis has let the job's state expire. The recorded counters guard the result:
if the re-run does not reproduce them (the object or the rules changed), the iterator raises
``InvalidInput`` (code ``job_changed``) rather than report rows that were not what was sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from storage.errors import InvalidInput, S3NotFound
from storage.keys import csv_upload_key, require_uuid
from storage.objects import ObjectInfo, head, open_stream
from storage.settings import get_settings
from tasks.csv_batches import state as st
from tasks.csv_batches.fanout import notification_id_factory
from tasks.csv_batches.reader import CsvReader
from tasks.csv_batches.spec import SOURCES, JobSpec
from tasks.csv_batches.validation.columns import ColumnLayout, FileError

DISPATCHED = "dispatched"
INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class RowOutcome:
    row_number: int
    recipient: str  # normalised when dispatched, as written (cleaned) when invalid
    status: str  # "dispatched" | "invalid"
    error_code: str | None
    error_message: str | None
    notification_id: str | None  # None when invalid


@dataclass(frozen=True)
class _Recorded:
    spec: JobSpec
    total: int
    dispatched: int
    invalid: int
    etags: tuple[str, ...]


def iter_row_outcomes(
    service_id: str, upload_id: str, source: str = "csv-upload"
) -> Iterator[RowOutcome]:
    """Every row of a finished job, in row order, streaming.

    Raises ``InvalidInput`` at once with code ``job_not_found`` (unknown upload, another
    service's upload, a job not finished yet, or cancelled), ``job_failed`` (a file-level error:
    no row was dispatched) or ``job_details_missing`` (the parameters are neither in Redis nor in
    the metadata); and while iterating, ``job_changed`` if the rows no longer match the counters.
    """
    require_uuid(service_id, "service_id")
    require_uuid(upload_id, "upload_id")
    if source not in SOURCES:
        raise InvalidInput(f"source must be one of {', '.join(SOURCES)}.", code="invalid_source")
    bucket = get_settings().bucket(source)
    key = csv_upload_key(service_id, upload_id)
    try:
        info = head(bucket, key)
    except S3NotFound:
        raise _not_found(upload_id, "its CSV file does not exist") from None
    recorded = _recorded_job(service_id, upload_id, source, info)
    current = info.etag.strip('"')
    if current not in recorded.etags and not _only_metadata_rewritten(recorded):
        raise InvalidInput(
            f"The CSV file of upload {upload_id} changed after its job ran.", code="job_changed"
        )
    return _outcomes(recorded, info)


def _not_found(upload_id: str, why: str) -> InvalidInput:
    return InvalidInput(f"No finished job for upload {upload_id}: {why}.", code="job_not_found")


def _recorded_job(service_id: str, upload_id: str, source: str, info: ObjectInfo) -> _Recorded:
    state = st.load_or_empty(upload_id)
    metadata = info.metadata
    if state.service_id not in (None, service_id):
        raise _not_found(upload_id, "it belongs to another service")
    status = metadata.get("processing_status") or state.status
    if status in (None, "", *st.PENDING_STATUSES):
        raise _not_found(upload_id, f"the job is {status or 'unknown'}")
    if status == st.CANCELLED:
        raise _not_found(upload_id, "the job was cancelled before it started")
    if status == st.FAILED:
        code = metadata.get("processing_error_code") or state.error_code or "unknown"
        raise InvalidInput(
            f"The job for upload {upload_id} failed ({code}): no rows were dispatched.",
            code="job_failed",
        )
    params = state.job_params()
    if params is None and metadata.get("processing_params"):
        params = json.loads(metadata["processing_params"])
    if params is None:
        raise InvalidInput(
            f"The parameters of the job for upload {upload_id} are no longer recorded.",
            code="job_details_missing",
        )
    spec = JobSpec.from_params(service_id, upload_id, {**params, "source": source})

    def number(meta_name: str, from_state: int) -> int:
        return int(metadata.get(meta_name) or from_state)

    etags = {
        e.strip('"')
        for e in (state.etag, state.final_etag, metadata.get("processing_source_etag"))
        if e
    }
    return _Recorded(
        spec=spec,
        total=number("processing_rows_total", state.total),
        dispatched=number("processing_rows_dispatched", state.dispatched),
        invalid=number("processing_rows_invalid", state.invalid),
        etags=tuple(etags),
    )


def _only_metadata_rewritten(recorded: _Recorded) -> bool:
    """A multipart upload's ETag changes when its metadata is rewritten (copy onto itself);
    without Redis we cannot know the new one, so accept it and let the counters decide."""
    return not recorded.etags or any("-" in e for e in recorded.etags)


def _changed(upload_id: str, why: str) -> InvalidInput:
    return InvalidInput(
        f"Re-reading upload {upload_id} no longer gives the job's rows ({why}).",
        code="job_changed",
    )


def _rows(reader: CsvReader, upload_id: str) -> Iterator[tuple[int, list[str]]]:
    try:
        yield from reader
    except FileError as error:
        raise _changed(upload_id, error.code) from None


def _outcomes(recorded: _Recorded, info: ObjectInfo) -> Iterator[RowOutcome]:
    spec = recorded.spec
    notification_id = notification_id_factory(spec.upload_id)
    _, body = open_stream(info.bucket, info.key, if_match=info.etag)
    total = dispatched = invalid = 0
    # The job's own limit is no longer known exactly; the recorded total bounds the read.
    try:
        reader = CsvReader(body, max_rows=max(recorded.total, 1))
        layout = ColumnLayout.from_header(
            reader.header, template_type=spec.template_type, placeholders=list(spec.placeholders)
        )
    except FileError as error:
        body.close()
        raise _changed(spec.upload_id, error.code) from None
    check_row = spec.row_checker(layout)
    with reader:
        for row_number, cells in _rows(reader, spec.upload_id):
            total = row_number
            check = check_row(cells)
            if check.ok:
                dispatched += 1
                yield RowOutcome(
                    row_number,
                    check.recipient or "",
                    DISPATCHED,
                    None,
                    None,
                    notification_id(row_number),
                )
            else:
                invalid += 1
                yield RowOutcome(
                    row_number,
                    check.recipient or "",
                    INVALID,
                    check.error_code,
                    check.error_message,
                    None,
                )
    if (total, dispatched, invalid) != (recorded.total, recorded.dispatched, recorded.invalid):
        raise InvalidInput(
            f"Re-reading upload {spec.upload_id} gave {dispatched} dispatched and {invalid} "
            f"invalid rows of {total}, but the job recorded {recorded.dispatched} and "
            f"{recorded.invalid} of {recorded.total}: the file or the rules changed.",
            code="job_changed",
        )
