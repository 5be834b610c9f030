"""``storage-usage``: objects and bytes per bucket, purpose and service across the registry.

A platform-wide report (the requesting service only names who asked). Each bucket is listed
one page at a time; only the per-service totals are kept, so memory grows with the number of
services, never with the number of objects. An empty bucket still gets a row (zero objects)
so every registry bucket shows up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from storage import keys
from storage.buckets import PURPOSES
from storage.listing import iter_objects
from storage.settings import get_settings
from tasks.reports.params import only

KIND = "storage-usage"
COLUMNS = ("bucket", "purpose", "service_id", "objects", "bytes", "oldest", "newest")

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
        groups: dict[str, list] = {}  # service_id -> [objects, bytes, oldest, newest]
        for obj in iter_objects(bucket):
            parsed = parse(obj.key) if parse else None
            service_id = parsed.service_id if parsed else ""
            group = groups.get(service_id)
            if group is None:
                groups[service_id] = [1, obj.size, obj.last_modified, obj.last_modified]
                continue
            group[0] += 1
            group[1] += obj.size
            group[2] = min(group[2], obj.last_modified)
            group[3] = max(group[3], obj.last_modified)
        if not groups:
            yield [bucket, purpose, "", 0, 0, "", ""]
        for service_id in sorted(groups):
            count, size, oldest, newest = groups[service_id]
            yield [
                bucket,
                purpose,
                service_id,
                count,
                size,
                keys.isoformat(oldest),
                keys.isoformat(newest),
            ]
