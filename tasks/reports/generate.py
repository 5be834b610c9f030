"""The core of ``notify.reports.generate``: one report request -> one CSV object, once.

Called by the task, the CLI and the tests alike. In order:

1. check the ids, the kind and its params (``InvalidInput`` before any S3 call);
2. HEAD the key: a finished report is never replaced, the result is ``skipped``;
3. abort stale multipart uploads of the key left by a killed run;
4. ask the kind's source for its header and rows (it checks the job/upload exists first);
5. stream the rows into the bucket, completing with ``If-None-Match: *``; losing that race to
   another run aborts this run's upload and returns ``skipped``;
6. tag the object with its row count (its metadata was fixed when the upload started).

A run killed at any line is safe to repeat: before step 5 completes nothing is visible (a
leftover upload is aborted by step 3 of a later run, or by the bucket's lifecycle rule); after
it, the repeat finds the report in step 2 and, if step 6 never happened, counts and tags it.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.errors import InvalidInput, S3PreconditionFailed, TransientError
from storage.keys import isoformat, report_key, require_uuid
from storage.objects import ObjectInfo, head_or_none
from storage.settings import get_settings
from tasks.reports.existing import abort_stale_uploads, existing_row_count
from tasks.reports.kinds import get_kind
from tasks.reports.settings import report_settings
from tasks.reports.writer import EXPIRY_TAG, ROW_COUNT_TAG, Progress, set_tags, write_csv
from worker.runtime.logs import log_context
from worker.runtime.settings import get_worker_settings

logger = logging.getLogger(__name__)

REPORT_BUCKET = "report-downloads"
RUN_TOKEN = "run_token"  # noqa: S105 - a metadata key, not a secret


def generate_report(
    report_request_id: str,
    service_id: str,
    kind: str,
    params: Mapping[str, Any] | None = None,
    *,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write the report and return the task result (``ok``, or ``skipped`` if it exists).

    ``progress`` is called with the number of rows written so far, every
    ``NOTIFY_REPORT_PROGRESS_EVERY`` rows and once at the end.
    """
    require_uuid(report_request_id, "report_request_id")
    require_uuid(service_id, "service_id")
    found = get_kind(kind)
    checked = found.checked_params(params)
    settings = report_settings()
    key = report_key(found.name, report_request_id)
    bucket = get_settings().bucket(REPORT_BUCKET)

    with log_context(service_id=service_id):
        existing = head_or_none(bucket, key)
        if existing is not None:
            return _finished(existing, service_id, found.name, "exists")

        abort_stale_uploads(bucket, key, timedelta(seconds=get_worker_settings().task_time_limit))
        header, rows = found.source(service_id, checked)
        tags = {EXPIRY_TAG: str(settings.expiry_days)}
        # The run's own token: if the answer to our completion is lost, botocore retries it
        # and the retry's If-None-Match is refused by our own object; the token tells us so.
        run_token = uuid.uuid4().hex
        metadata = {
            "kind": found.name,
            "generated_at": isoformat(datetime.now(UTC)),
            "service_id": service_id,
            "report_request_id": report_request_id,
            RUN_TOKEN: run_token,
        }
        try:
            written = write_csv(
                bucket,
                key,
                header,
                rows,
                part_size=settings.part_size,
                metadata=metadata,
                tags=tags,
                progress=progress,
                progress_every=settings.progress_every,
            )
        except S3PreconditionFailed:
            # Another run completed first (or, on S3, is completing right now: 409).
            winner = head_or_none(bucket, key)
            if winner is None:
                raise TransientError(
                    f"Another run is writing {key}; will retry.", code="report_conflict"
                ) from None
            if winner.metadata.get(RUN_TOKEN) == run_token:
                return _ours_after_lost_answer(winner, found.name, report_request_id)
            return _finished(winner, service_id, found.name, "written_by_another_run")
        finally:
            close = getattr(rows, "close", None)
            if close is not None:
                close()  # release a source's cursor or threads at once, even on failure

        set_tags(bucket, key, {**tags, ROW_COUNT_TAG: str(written.rows)})
        logger.info(
            "report written: %s rows=%d bytes=%d parts=%d",
            key,
            written.rows,
            written.size_bytes,
            written.parts,
        )
        return {
            "status": "ok",
            "kind": found.name,
            "report_request_id": report_request_id,
            "bucket": bucket,
            "key": key,
            "rows": written.rows,
            "size_bytes": written.size_bytes,
        }


def _ours_after_lost_answer(info: ObjectInfo, kind: str, report_request_id: str) -> dict[str, Any]:
    """Our completion went through but its answer was lost: the report is ours and whole."""
    rows = existing_row_count(info)  # counts and tags it: the tagging step never ran
    logger.info("report written (completion answer was lost): %s rows=%s", info.key, rows)
    return {
        "status": "ok",
        "kind": kind,
        "report_request_id": report_request_id,
        "bucket": info.bucket,
        "key": info.key,
        "rows": rows,
        "size_bytes": info.size,
    }


def _finished(info: ObjectInfo, service_id: str, kind: str, reason: str) -> dict[str, Any]:
    owner = info.metadata.get("service_id")
    if owner and owner != service_id:
        raise InvalidInput(
            f"Report request {info.metadata.get('report_request_id', '?')} already holds a "
            "report for another service; use a new report_request_id.",
            code="report_conflict",
        )
    logger.info("report already there (%s): %s", reason, info.key)
    return {
        "status": "skipped",
        "reason": reason,
        "kind": kind,
        "report_request_id": info.metadata.get("report_request_id") or info.key,
        "bucket": info.bucket,
        "key": info.key,
        "rows": existing_row_count(info),
        "size_bytes": info.size,
    }
