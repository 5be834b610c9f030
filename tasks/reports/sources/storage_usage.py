"""``storage-usage``: objects and bytes per bucket, purpose and service across the registry.

A platform-wide report (the requesting service only names who asked). Each bucket is listed
one page at a time; only the per-service totals are kept, so memory grows with the number of
services, never with the number of objects. An empty bucket still gets a row (zero objects)
so every registry bucket shows up.

On a versioned bucket the versions are listed instead: ``objects`` and ``bytes`` count current
versions only, and three more columns (after the contract's seven) count what versioning keeps:
``noncurrent_versions``, ``noncurrent_bytes`` (overwritten or deleted versions, until the
bucket's noncurrent-version rule expires them) and ``delete_markers``. They are 0 elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from storage import keys
from storage.admin import versioning_status
from storage.buckets import PURPOSES
from storage.listing import ListedVersion, iter_objects, iter_versions
from storage.settings import get_settings
from tasks.reports.params import only

KIND = "storage-usage"
COLUMNS = (
    "bucket",
    "purpose",
    "service_id",
    "objects",
    "bytes",
    "oldest",
    "newest",
    "noncurrent_versions",
    "noncurrent_bytes",
    "delete_markers",
)

# Which key parser finds the service id in each purpose's keys; other purposes have none.
SERVICE_PARSERS: dict[str, Callable[[str], keys.ServiceObject | None]] = {
    "csv-upload": keys.parse_csv_upload_key,
    "contact-list": keys.parse_csv_upload_key,
    "transient-letters": keys.parse_transient_letter_key,
    "letter-attachments": keys.parse_letter_attachment_key,
    "email-attachments": keys.parse_email_attachment_key,
}


def check_params(params: Mapping[str, Any]) -> dict[str, Any]:
    only(KIND, params)
    return {}


def source(service_id: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], Iterator[list]]:
    check_params(params)
    return COLUMNS, _rows()


def _rows() -> Iterator[list]:
    settings = get_settings()
    for purpose in PURPOSES:
        bucket = settings.bucket(purpose)
        parse = SERVICE_PARSERS.get(purpose)
        # service_id -> [objects, bytes, oldest, newest, noncurrent, noncurrent bytes, markers]
        groups: dict[str, list] = {}
        if versioning_status(bucket):
            entries: Iterator[ListedVersion] = iter_versions(bucket)
        else:
            entries = (
                ListedVersion(o.key, o.size, o.last_modified, True, False)
                for o in iter_objects(bucket)
            )
        for entry in entries:
            parsed = parse(entry.key) if parse else None
            service_id = parsed.service_id if parsed else ""
            group = groups.get(service_id)
            if group is None:
                group = groups[service_id] = [0, 0, None, None, 0, 0, 0]
            if entry.delete_marker:
                group[6] += 1
            elif not entry.is_latest:
                group[4] += 1
                group[5] += entry.size
            else:
                group[0] += 1
                group[1] += entry.size
                when = entry.last_modified
                group[2] = when if group[2] is None else min(group[2], when)
                group[3] = when if group[3] is None else max(group[3], when)
        if not groups:
            yield [bucket, purpose, "", 0, 0, "", "", 0, 0, 0]
        for service_id in sorted(groups):
            count, size, oldest, newest, noncurrent, noncurrent_size, markers = groups[service_id]
            yield [
                bucket,
                purpose,
                service_id,
                count,
                size,
                keys.isoformat(oldest) if oldest else "",
                keys.isoformat(newest) if newest else "",
                noncurrent,
                noncurrent_size,
                markers,
            ]
