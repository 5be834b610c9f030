"""``uploads``: the service's CSV uploads with their metadata and processing status.

Lists ``service-{sid}-notify/`` in the csv-upload bucket one page at a time and HEADs each
object for its metadata (ListObjectsV2 carries none), a few HEADs in parallel, in key order.
``uploaded_at`` is the metadata the CSV workflow records when it rewrites the object's metadata
(that rewrite resets LastModified), else LastModified. ``from`` is inclusive, ``to`` exclusive.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from storage.client import get_client
from storage.errors import InvalidInput
from storage.keys import csv_upload_prefix, isoformat, parse_csv_upload_key, parse_timestamp
from storage.listing import ListedObject, iter_pages
from storage.objects import ObjectInfo, head_or_none
from storage.settings import get_settings
from tasks.reports.params import only, refuse, timestamp_param

KIND = "uploads"
COLUMNS = (
    "upload_id",
    "original_file_name",
    "template_id",
    "notification_count",
    "valid",
    "processing_status",
    "uploaded_at",
    "size_bytes",
)
HEAD_THREADS = 8


def check_params(params: Mapping[str, Any]) -> dict[str, str]:
    only(KIND, params, optional=("from", "to"))
    start = timestamp_param(params, "from")
    end = timestamp_param(params, "to")
    if start and end and start >= end:
        raise refuse("The uploads report needs `from` before `to`.")
    checked = {}
    if start:
        checked["from"] = start.isoformat()
    if end:
        checked["to"] = end.isoformat()
    return checked


def source(service_id: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], Iterator[list]]:
    checked = check_params(params)
    start = timestamp_param(checked, "from")
    end = timestamp_param(checked, "to")
    bucket = get_settings().bucket("csv-upload")
    return COLUMNS, _rows(bucket, csv_upload_prefix(service_id), start, end)


def uploaded_at(info: ObjectInfo) -> datetime:
    recorded = info.metadata.get("uploaded_at")
    if recorded:
        try:
            return parse_timestamp(recorded)
        except InvalidInput:
            pass  # a hand-edited value: LastModified is the next best thing
    return info.last_modified


def _rows(bucket: str, prefix: str, start: datetime | None, end: datetime | None) -> Iterator[list]:
    client = get_client()

    def head(listed: ListedObject) -> ObjectInfo | None:
        return head_or_none(bucket, listed.key, client=client)

    with ThreadPoolExecutor(HEAD_THREADS, thread_name_prefix="report-head") as pool:
        for page in iter_pages(bucket, prefix, client=client):
            # The rewrite only moves LastModified later, so uploaded_at <= LastModified: an
            # object last modified before `from` cannot match, and needs no HEAD.
            wanted = [
                o
                for o in page
                if parse_csv_upload_key(o.key) and (start is None or o.last_modified >= start)
            ]
            for info in pool.map(head, wanted):
                if info is None:
                    continue  # deleted between the listing and the HEAD
                when = uploaded_at(info)
                if (start and when < start) or (end and when >= end):
                    continue
                meta = info.metadata
                yield [
                    parse_csv_upload_key(info.key).object_id,
                    meta.get("original_file_name", ""),
                    meta.get("template_id", ""),
                    meta.get("notification_count", ""),
                    meta.get("valid", ""),
                    meta.get("processing_status", ""),
                    isoformat(when),
                    info.size,
                ]
