"""The PostgreSQL notification store: the ``notifications`` table.

One batch is one statement in one transaction: the rows go to the server as one JSON array
(serialised in C by msgspec, one parameter), are expanded there by
``jsonb_to_recordset`` and inserted. A plain INSERT is tried first (the usual case: every row is
new); if any row is already there (a redelivery, a re-send) it fails with a unique violation,
rolls back, and the batch is inserted again with ``ON CONFLICT (id) DO NOTHING``, which adds
only the missing rows. Either way the statement's row count is the number of new rows, and two
copies of a batch stored at the same moment still store each row once (the second waits on the
first's uncommitted keys). The statements are prepared once per connection. Compared with COPY
into a temporary table and an INSERT from it, this is one round trip instead of four and no
temporary table; see docs/benchmarks.md for the figures.

After the commit the job's Redis progress (``stored``, ``stored_at``) is updated as a hint for
progress displays and the reconciler's "is the sink still busy" check; the reconciler's count of
stored rows comes from the table itself (``stored_count``).

Bad data fails the batch, and only that batch, with ``invalid_batch_data``, the row numbers and
what is wrong with them (never a value): a NUL character anywhere (PostgreSQL text and jsonb
cannot hold one), a recipient longer than ``MAX_RECIPIENT_CHARS``, a row number out of range,
personalisation that is not an object.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec
import redis
from psycopg.errors import UniqueViolation

from storage.errors import InvalidInput
from storage.keys import require_uuid
from tasks.csv_batches.store.batch import Batch, bad_batch
from tasks.csv_batches.store.redis_hash import record_stored
from worker.runtime.database import connection

logger = logging.getLogger(__name__)

NOTIFICATION_TYPES = ("sms", "email", "letter")
# Also a CHECK constraint on the table. Generous: an email address is at most 254, a letter's
# address at most 7 lines the validation has already bounded.
MAX_RECIPIENT_CHARS = 1000
MAX_ROW_NUMBER = 2**31 - 1
_SHOWN_ROWS = 20

INSERT = """
INSERT INTO notifications
    (id, job_id, job_row_number, service_id, template_id, notification_type, "to",
     personalisation, status, created_at)
SELECT r.notification_id, %(job_id)s::uuid, r.row_number, %(service_id)s::uuid,
       %(template_id)s::uuid, %(notification_type)s, r.recipient, r.personalisation,
       'created', now()
FROM jsonb_to_recordset(%(rows)s::jsonb)
    AS r(notification_id uuid, row_number integer, recipient text, personalisation jsonb)
ON CONFLICT (id) DO NOTHING
"""

# The same without ON CONFLICT: a third less database CPU per row (no speculative insertion;
# measured in docs/benchmarks.md). Tried first; a batch that holds a row already stored (a
# redelivery, a re-send, a duplicate) fails it with a unique violation and is stored again with
# INSERT, which skips those rows.
INSERT_NEW = INSERT.replace("ON CONFLICT (id) DO NOTHING", "")

COUNT = "SELECT count(*) FROM notifications WHERE job_id = %s"


_encode = msgspec.json.Encoder().encode


def rows_json(rows: list[Mapping[str, Any]]) -> str:
    """The rows as one JSON array: msgspec's encoder, three times the standard library's speed
    on a batch; ``json.dumps`` for what msgspec will not write (text with a lone surrogate).
    A NaN or infinity, which no JSON text holds (only a Python sender's extension), is written
    as null."""
    try:
        return _encode(rows).decode()
    except (TypeError, ValueError, UnicodeError):
        return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    return False


def row_problems(rows: list[Mapping[str, Any]]) -> dict[str, list[str]]:
    """What is wrong with which rows: {problem: [row number (or #index), ...]}."""
    found: dict[str, list[str]] = {}
    for index, row in enumerate(rows, start=1):
        number = row.get("row_number")
        valid_number = type(number) is int and 1 <= number <= MAX_ROW_NUMBER
        where = str(number) if valid_number else f"#{index} in the batch"
        problems = []
        if not valid_number:
            problems.append("row_number is not a whole number from 1")
        recipient = row.get("recipient")
        if not isinstance(recipient, str):
            problems.append("recipient is not text")
        elif len(recipient) > MAX_RECIPIENT_CHARS:
            problems.append(f"recipient longer than {MAX_RECIPIENT_CHARS:,} characters")
        if not isinstance(row.get("personalisation"), Mapping):
            problems.append("personalisation is not an object")
        if _has_nul(recipient) or _has_nul(row.get("personalisation")):
            problems.append("a NUL character in a value")
        for problem in problems:
            found.setdefault(problem, []).append(where)
    return found


def bad_rows_error(batch: Batch, problems: dict[str, list[str]]) -> InvalidInput:
    parts = []
    for problem, where in problems.items():
        shown = ", ".join(where[:_SHOWN_ROWS]) + (" …" if len(where) > _SHOWN_ROWS else "")
        parts.append(f"{problem}: rows {shown} ({len(where)})")
    return InvalidInput(
        f"batch of upload {batch.upload_id} (from row {batch.first_row()}) not stored, "
        f"nothing in it was: {'; '.join(parts)}.",
        code="invalid_batch_data",
    )


class PostgresStore:
    name = "postgresql"

    def save(self, batch: Batch) -> int:
        template_id = require_uuid(batch.template_id, "batch.template_id")
        if batch.template_type not in NOTIFICATION_TYPES:
            raise bad_batch(f"template_type must be one of {', '.join(NOTIFICATION_TYPES)}")
        payload = rows_json(batch.rows)
        # One substring search over the whole batch; a precise look only if it finds something
        # (a literal backslash-u0000 typed in a cell matches too, and is fine).
        if "\\u0000" in payload:
            problems = row_problems(batch.rows)
            if problems:
                raise bad_rows_error(batch, problems)
        params = {
            "job_id": batch.upload_id,
            "service_id": batch.service_id,
            "template_id": template_id,
            "notification_type": batch.template_type,
            "rows": payload,
        }
        try:
            with connection() as conn:
                try:
                    with conn.transaction():
                        added = conn.execute(INSERT_NEW, params, prepare=True).rowcount
                except UniqueViolation:
                    # Rolled back; committed when the pooled connection is given back.
                    added = conn.execute(INSERT, params, prepare=True).rowcount
        except InvalidInput:
            # The database refused something: say which rows, if we can tell.
            problems = row_problems(batch.rows)
            if problems:
                raise bad_rows_error(batch, problems) from None
            raise
        try:
            record_stored(batch.upload_id, added)
        except redis.RedisError as error:
            # The rows are committed; only the progress hint is missing.
            logger.warning("rows stored but progress not recorded: %s", type(error).__name__)
        return added

    def stored_count(self, upload_id: str, counted: int | None = None) -> int:
        # The table is the truth: the Redis counter misses a batch whose worker died between
        # the commit and the counter update.
        with connection() as conn:
            return int(conn.execute(COUNT, (upload_id,)).fetchone()[0])


# The columns a report of a job's rows reads, in row order.
JOB_ROWS = """
SELECT id::text, job_id::text, job_row_number, "to", template_id::text, notification_type
FROM notifications
WHERE job_id = %s AND service_id = %s
ORDER BY job_row_number
"""
JOB_EXISTS = "SELECT 1 FROM notifications WHERE job_id = %s AND service_id = %s LIMIT 1"
STREAM_ROWS = 2000


def iter_job_rows(service_id: str, upload_id: str) -> Iterator[tuple]:
    """A job's stored rows in row order (id, job_id, row number, to, template id, type),
    through a server-side cursor: memory holds ``STREAM_ROWS`` rows whatever the job's size."""
    with connection() as conn, conn.cursor(name=f"job_rows_{upload_id[:8]}") as cursor:
        cursor.itersize = STREAM_ROWS
        cursor.execute(JOB_ROWS, (upload_id, service_id))
        yield from cursor


def job_has_rows(service_id: str, upload_id: str) -> bool:
    with connection() as conn:
        return conn.execute(JOB_EXISTS, (upload_id, service_id)).fetchone() is not None
