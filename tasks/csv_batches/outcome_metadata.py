"""Writing a job's outcome (or its schedule) into the CSV object's own metadata.

Changing metadata means copying the object onto itself, which resets ``LastModified``: the
first rewrite records the original upload time as ``uploaded_at`` and every later one keeps
it. Every key already there (the web app's ``original_file_name``, ``notification_count``,
``template_id``, ``valid``, ``sender_id``, anything else) is preserved.

Outcome keys (docs/storage.md): ``processing_status`` (finished/failed/cancelled),
``processing_rows_total``, ``processing_rows_dispatched``, ``processing_rows_invalid``,
``processing_finished_at``, ``processing_error_code`` (failed jobs only) and ``uploaded_at``;
plus ``processing_params`` (the job's template/options, so the ``job-outcome`` report and the
reconciler work without Redis) and ``processing_source_etag`` (the ETag the job read).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from storage.errors import S3PreconditionFailed
from storage.keys import isoformat
from storage.objects import ObjectInfo, head, replace_metadata

logger = logging.getLogger(__name__)

_ATTEMPTS = 3  # HEAD + pinned copy, again if the object changed in between
# S3 limits user metadata to 2 KB (keys and values, UTF-8 bytes).
METADATA_LIMIT_BYTES = 2048
# Keys we may drop (in this order) rather than fail a write that would exceed the limit.
_DROPPABLE = ("processing_params", "processing_source_etag")


def metadata_size(metadata: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())


def merged_metadata(info: ObjectInfo, updates: Mapping[str, str]) -> dict[str, str]:
    """The object's metadata with ``updates`` applied and ``uploaded_at`` kept or recorded."""
    merged = dict(info.metadata)
    merged.setdefault("uploaded_at", isoformat(info.last_modified))
    merged.update({k: str(v) for k, v in updates.items()})
    for name in _DROPPABLE:
        if metadata_size(merged) <= METADATA_LIMIT_BYTES:
            break
        if name in merged:
            logger.warning("metadata near the 2 KB limit: %s not recorded", name)
            del merged[name]
    return merged


def write_metadata(bucket: str, key: str, updates: Mapping[str, str]) -> tuple[ObjectInfo, str]:
    """Apply ``updates`` to the object's metadata (fresh HEAD, copy pinned to its ETag).

    Returns the info read before the write and the object's new ETag.
    """
    for attempt in range(_ATTEMPTS):
        info = head(bucket, key)
        try:
            return info, replace_metadata(info, merged_metadata(info, updates))
        except S3PreconditionFailed:
            # Someone rewrote it between our HEAD and our copy: read it again, keep their keys.
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def outcome_fields(
    status: str,
    *,
    total: int,
    dispatched: int,
    invalid: int,
    finished_at: str,
    error_code: str | None = None,
    params_json: str | None = None,
    source_etag: str | None = None,
) -> dict[str, str]:
    fields = {
        "processing_status": status,
        "processing_rows_total": str(total),
        "processing_rows_dispatched": str(dispatched),
        "processing_rows_invalid": str(invalid),
        "processing_finished_at": finished_at,
    }
    if error_code:
        fields["processing_error_code"] = error_code
    if params_json:
        fields["processing_params"] = params_json
    if source_etag:
        fields["processing_source_etag"] = source_etag.strip('"')
    return fields


def write_outcome(bucket: str, key: str, fields: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """Write the outcome once: if the object already carries one, keep it and change nothing.

    Returns (the outcome metadata now on the object, the object's ETag).
    """
    for attempt in range(_ATTEMPTS):
        info = head(bucket, key)
        if info.metadata.get("processing_status"):
            return dict(info.metadata), info.etag
        merged = merged_metadata(info, fields)
        try:
            return merged, replace_metadata(info, merged)
        except S3PreconditionFailed:
            if attempt == _ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def recorded_outcome(metadata: Mapping[str, str]) -> dict[str, object] | None:
    """The outcome recorded in the metadata as task-result fields, or None."""
    status = metadata.get("processing_status")
    if not status:
        return None

    def number(name: str) -> int:
        try:
            return int(metadata.get(name) or 0)
        except ValueError:
            return 0

    result: dict[str, object] = {
        "job_status": status,
        "rows_total": number("processing_rows_total"),
        "rows_dispatched": number("processing_rows_dispatched"),
        "rows_invalid": number("processing_rows_invalid"),
        "finished_at": metadata.get("processing_finished_at"),
    }
    if metadata.get("processing_error_code"):
        result["error_code"] = metadata["processing_error_code"]
    return result
