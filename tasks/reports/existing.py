"""A report that is already there: describe it, repair its row-count tag, clear dead uploads.

A run killed between completing the object and tagging it leaves a finished report without
``row-count``; the next run counts the rows by streaming the object (flat memory) and sets the
tag, so every finished report ends up tagged. A run killed mid-stream leaves an incomplete
multipart upload; the next run for the same key aborts uploads older than the task time limit
(no task lives that long, so their writers are dead).
"""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from storage.client import get_client
from storage.errors import S3NotFound, s3_errors
from storage.listing import iter_multipart_uploads
from storage.objects import ObjectInfo, get_tags, open_stream
from tasks.reports.writer import ROW_COUNT_TAG, set_tags

logger = logging.getLogger(__name__)


def count_rows(info: ObjectInfo, *, client: Any = None) -> int | None:
    """Data rows of a finished report (records after the header), streamed; None if unreadable."""
    _, body = open_stream(info.bucket, info.key, if_match=info.etag, client=client)
    with io.TextIOWrapper(io.BufferedReader(body), encoding="utf-8", newline="") as text:
        try:
            records = sum(1 for _ in csv.reader(text))
        except (csv.Error, UnicodeDecodeError):
            logger.warning("could not count the rows of %s", info.key)
            return None
    return max(records - 1, 0)


def existing_row_count(info: ObjectInfo, *, client: Any = None) -> int | None:
    """The ``row-count`` tag, counted and set first when a killed run never set it."""
    tags = get_tags(info.bucket, info.key, client=client)
    raw = tags.get(ROW_COUNT_TAG)
    if raw is not None and raw.isdigit():
        return int(raw)
    rows = count_rows(info, client=client)
    if rows is not None:
        set_tags(info.bucket, info.key, {**tags, ROW_COUNT_TAG: str(rows)}, client=client)
        logger.info("repaired the row-count tag of %s", info.key)
    return rows


def abort_stale_uploads(
    bucket: str, key: str, older_than: timedelta, *, now: datetime | None = None, client: Any = None
) -> int:
    """Abort incomplete multipart uploads of exactly ``key`` started before ``now - older_than``.

    Younger uploads may belong to a run still working (a concurrent duplicate delivery): those
    are left alone, and the conditional completion settles which run wins.
    """
    client = client or get_client()
    cutoff = (now or datetime.now(UTC)) - older_than
    aborted = 0
    for upload in iter_multipart_uploads(bucket, key, client=client):
        if upload.key != key or upload.initiated >= cutoff:
            continue
        try:
            with s3_errors(bucket, key):
                client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload.upload_id)
        except S3NotFound:
            continue  # someone else aborted or completed it
        aborted += 1
    if aborted:
        logger.info("aborted %d stale multipart upload(s) of %s", aborted, key)
    return aborted
