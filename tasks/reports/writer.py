"""Stream CSV rows into the report bucket in flat memory, neutralising formulas on the way.

Rows go through ``csv.writer`` into a small text buffer that is encoded and handed to
``storage.upload.MultipartWriter`` every ~64 KiB, so memory holds one part plus one small
buffer whatever the row count. The writer completes with ``If-None-Match: *`` (PutObject for a
report smaller than one part, CompleteMultipartUpload otherwise): a finished report is never
replaced. Any failure, a lost race included, aborts the multipart upload.

Formula injection is handled here, not in the sources, so every kind (plug-ins too) gets it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from storage.client import get_client
from storage.errors import NotifyError, s3_errors
from storage.keys import isoformat
from storage.upload import MultipartWriter

CONTENT_TYPE = "text/csv; charset=utf-8"
FLUSH_BYTES = 64 * 1024
ROW_COUNT_TAG = "row-count"
EXPIRY_TAG = "expire-after-days"

# Spreadsheets treat a cell starting with one of these as a formula (or strip the control
# character and then do): CSV injection. A leading apostrophe makes it plain text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[int], None]


def safe_cell(value: Any) -> str:
    """One cell as text, neutralised with a leading ``'`` when it could run as a formula."""
    if value.__class__ is not str:
        if value is None:
            return ""
        value = isoformat(value) if isinstance(value, datetime) else str(value)
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


class BadSourceRow(NotifyError):
    """A source yielded a row that does not fit its header (a bug in the source)."""

    code = "bad_source_row"


@dataclass(frozen=True)
class WrittenReport:
    bucket: str
    key: str
    etag: str
    size_bytes: int
    rows: int
    parts: int  # 0: one PutObject


def write_csv(
    bucket: str,
    key: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    part_size: int,
    metadata: Mapping[str, str],
    tags: Mapping[str, str],
    progress: Progress | None = None,
    progress_every: int = 10_000,
    client: Any = None,
) -> WrittenReport:
    """Write ``header`` and ``rows`` as one CSV object that must not exist yet.

    Raises ``S3PreconditionFailed`` (after aborting) when another writer finished first, and
    re-raises anything the rows or S3 raise, after aborting.
    """
    width = len(header)
    if width == 0:
        raise BadSourceRow("A report source returned an empty header.")
    text = io.StringIO()
    out = csv.writer(text)
    out.writerow([safe_cell(cell) for cell in header])
    count = 0
    next_progress = progress_every
    flush_bytes = min(FLUSH_BYTES, part_size)  # tests use tiny parts: keep them flowing
    with MultipartWriter(
        bucket,
        key,
        part_size=part_size,
        metadata=metadata,
        content_type=CONTENT_TYPE,
        tags=tags,
        if_none_match=True,
        client=client,
    ) as upload:
        for row in rows:
            cells = [safe_cell(cell) for cell in row]
            if len(cells) != width:
                raise BadSourceRow(
                    f"Row {count + 1} of the report has {len(cells)} cells; the header has {width}."
                )
            out.writerow(cells)
            count += 1
            # tell() is cheap but not free: look every 64 rows.
            if not count & 63 and text.tell() >= flush_bytes:
                upload.write(text.getvalue().encode())
                text.seek(0)
                text.truncate()
            if count >= next_progress:
                next_progress += progress_every
                if progress is not None:
                    progress(count)
        upload.write(text.getvalue().encode())
        # Inside the block: a failed (conditional) completion aborts the upload too.
        result = upload.close()
    if progress is not None:
        progress(count)
    return WrittenReport(bucket, key, result.etag, result.size, count, result.parts)


def set_tags(bucket: str, key: str, tags: Mapping[str, str], *, client: Any = None) -> None:
    """Replace the object's tag set (PutObjectTagging replaces, so pass every tag)."""
    client = client or get_client()
    tag_set = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    with s3_errors(bucket, key):
        client.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tag_set})
