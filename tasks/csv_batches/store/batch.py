"""The batch the built-in sink receives, checked, and the interface every notification store
implements (``NotificationStore``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from storage.errors import InvalidInput
from storage.keys import UUID_PATTERN, require_uuid
from tasks.csv_batches.fanout import MAX_BATCH_ROWS

ROW_FIELDS = ("notification_id", "row_number", "recipient", "personalisation")
_ROW_FIELD_SET = frozenset(ROW_FIELDS)
# Every id of a batch joined by commas, checked by one match: a tenth of a call per row.
_UUID_LIST = re.compile(f"{UUID_PATTERN}(?:,{UUID_PATTERN})*")


@dataclass(frozen=True)
class Batch:
    """A fan-out batch whose ids have been checked (rows are checked by each store)."""

    upload_id: str
    service_id: str
    template_id: Any
    template_type: Any
    sender_id: Any
    rows: list[Mapping[str, Any]]

    def first_row(self) -> Any:
        return self.rows[0].get("row_number")


def bad_batch(message: str) -> InvalidInput:
    return InvalidInput(f"batch: {message}", code="invalid_batch")


def parse_batch(batch: Any) -> Batch:
    """Check a fan-out batch's shape: an object with UUID ids and 1..1,000 rows, each row an
    object with a UUID notification_id and the other row fields."""
    if not isinstance(batch, Mapping):
        raise bad_batch("must be an object")
    upload_id = require_uuid(batch.get("upload_id"), "batch.upload_id")
    service_id = require_uuid(batch.get("service_id"), "batch.service_id")
    rows = batch.get("rows")
    if not isinstance(rows, list) or not 0 < len(rows) <= MAX_BATCH_ROWS:
        raise bad_batch(f"rows must be a list of 1 to {MAX_BATCH_ROWS:,} rows")
    if not all(
        (type(row) is dict or isinstance(row, Mapping)) and row.keys() >= _ROW_FIELD_SET
        for row in rows
    ):
        raise bad_batch(f"every row needs {', '.join(ROW_FIELDS)}")
    ids = [row["notification_id"] for row in rows]
    try:
        joined = ",".join(ids)
    except TypeError:  # an id that is not text
        joined = ""
    # The length rules out one "id" holding two: canonical UUIDs are 36 characters.
    all_uuids = len(joined) == 37 * len(ids) - 1 and _UUID_LIST.fullmatch(joined) is not None
    if not all_uuids:
        for notification_id in ids:  # say which
            require_uuid(notification_id, "notification_id")
    return Batch(
        upload_id=upload_id,
        service_id=service_id,
        template_id=batch.get("template_id"),
        template_type=batch.get("template_type"),
        sender_id=batch.get("sender_id"),
        rows=rows,
    )


class NotificationStore(Protocol):
    name: str

    def save(self, batch: Batch) -> int:
        """Store the batch's rows that are not stored yet; return how many were new."""
        ...

    def stored_count(self, upload_id: str, counted: int | None = None) -> int:
        """How many rows of this upload are stored (``counted``: the job's Redis ``stored``
        counter, if the caller has read it already)."""
        ...
