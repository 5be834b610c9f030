"""Stream CSV rows into the report bucket in flat memory, neutralising formulas on the way.

Rows are encoded 64 at a time — with a few C-speed joins and replaces when no cell needs
quoting (the common case), else cell by cell through ``csv.writer`` — and handed to
``storage.upload.MultipartWriter`` every ~64 KiB from a background thread (part uploads
overlap encoding; see ``background``), so memory holds about two parts whatever the row count.
The writer completes with ``If-None-Match: *`` (PutObject for a report smaller than one part,
CompleteMultipartUpload otherwise): a finished report is never replaced. Any failure, a lost
race included, aborts the multipart upload.

Formula injection is handled here, not in the sources, so every kind (plug-ins too) gets it.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from storage.client import get_client
from storage.errors import NotifyError, s3_errors
from storage.upload import MultipartWriter
from tasks.reports.background import BackgroundWriter

CONTENT_TYPE = "text/csv; charset=utf-8"
FLUSH_BYTES = 64 * 1024
ROW_COUNT_TAG = "row-count"
EXPIRY_TAG = "expire-after-days"

# Spreadsheets treat a cell starting with one of these as a formula (or strip the control
# character and then do): CSV injection. A leading apostrophe makes it plain text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# "\r" is not here: a cell holding one is always quoted, so never takes the fast path.
_FORMULA_CHARS_UNQUOTED = "=+-@\t"
BATCH_ROWS = 64  # rows encoded together

Progress = Callable[[int], None]


def safe_cell(value: Any) -> str:
    """One cell as text (``str()``, None as empty), with a leading ``'`` if it could run as a
    formula. Sources format their own dates (``storage.keys.isoformat``)."""
    if value.__class__ is not str:
        value = "" if value is None else str(value)
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


def _plain_text(cells: list[Any], width: int) -> str | None:
    """The batch's CSV text built with joins, or None when csv would quote some cell.

    csv quotes a cell holding the delimiter, the quote character or a line break; with none of
    those every ',' and '\n' in the text is a delimiter, so a cell starts at the start of the
    text or right after one of them, and formulas are neutralised with a few str.replace
    passes. Same bytes as csv.writer + safe_cell (both turn non-strings into text with str()).
    """
    texts = list(map(str, cells))
    flat = ",".join(texts)
    if flat.count(",") != len(texts) - 1 or '"' in flat or "\r" in flat or "\n" in flat:
        return None
    text = "\r\n".join(map(",".join, zip(*[iter(texts)] * width, strict=True))) + "\r\n"
    for char in _FORMULA_CHARS_UNQUOTED:
        if char in text:
            text = text.replace("," + char, ",'" + char).replace("\n" + char, "\n'" + char)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _encode_batch(batch: list[Sequence[Any]], width: int, first_row: int) -> str:
    """CSV text of a batch of rows, every cell neutralised."""
    if width > 1:  # csv writes a lone empty cell as "": leave one-column rows to it
        try:
            fits = set(map(len, batch)) == {width}
        except TypeError:  # a row that is not a sequence: the careful path below copes
            fits = False
        if fits:
            cells = list(chain.from_iterable(batch))
            if None not in cells:
                text = _plain_text(cells, width)
                if text is not None:
                    return text
    buffer = io.StringIO()
    out = csv.writer(buffer)
    for offset, row in enumerate(batch):
        cells = [safe_cell(cell) for cell in row]
        if len(cells) != width:
            raise BadSourceRow(
                f"Row {first_row + offset} of the report has {len(cells)} cells; the header has "
                f"{width}."
            )
        out.writerow(cells)
    return buffer.getvalue()


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

    Rows are sequences of cells (str, numbers, None). Raises ``S3PreconditionFailed`` (after
    aborting) when another writer finished first, and re-raises anything the rows or S3
    raise, after aborting.
    """
    width = len(header)
    if width == 0:
        raise BadSourceRow("A report source returned an empty header.")
    pending = [_encode_batch([header], width, 0)]
    pending_chars = len(pending[0])
    flush_chars = min(FLUSH_BYTES, part_size)  # tests use tiny parts: keep them flowing
    count = 0
    reported = 0
    source = iter(rows)
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
        with BackgroundWriter(upload, max_chunks=part_size // flush_chars) as sink:
            while batch := list(islice(source, BATCH_ROWS)):
                chunk = _encode_batch(batch, width, count + 1)
                count += len(batch)
                pending.append(chunk)
                pending_chars += len(chunk)
                if pending_chars >= flush_chars:
                    sink.write("".join(pending).encode())
                    pending.clear()
                    pending_chars = 0
                if progress is not None and count - reported >= progress_every:
                    reported = count
                    progress(count)
            sink.write("".join(pending).encode())
        # Every part is sent now. Inside the block: a failed (conditional) completion aborts.
        result = upload.close()
    if progress is not None and count != reported:
        progress(count)
    return WrittenReport(bucket, key, result.etag, result.size, count, result.parts)


def set_tags(bucket: str, key: str, tags: Mapping[str, str], *, client: Any = None) -> None:
    """Replace the object's tag set (PutObjectTagging replaces, so pass every tag)."""
    client = client or get_client()
    tag_set = [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    with s3_errors(bucket, key):
        client.put_object_tagging(Bucket=bucket, Key=key, Tagging={"TagSet": tag_set})
