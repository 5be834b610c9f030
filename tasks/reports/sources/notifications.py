"""``notifications``: the rows the built-in sink stored, per upload, streamed with HSCAN.

The sink keeps each upload's rows in the Redis hash ``notify:notifications:{upload_id}``
(field ``notification_id``, value the row as JSON). Without ``upload_id`` the service's uploads
come from the CSV workflow's sorted set ``notify:service:{service_id}:uploads``. Values are read
defensively: a row that is not JSON, or that names another service, is skipped. Template id and
type come from the stored row when it has them, else from the job (once per upload).

HSCAN returns rows in hash order, not row order: sort the CSV if order matters (it holds
``row_number``). Memory holds one HSCAN page.

With ``NOTIFY_DATABASE_URL`` set the rows come from the ``notifications`` table instead, in row
order, through a server-side cursor (memory flat whatever the job's size); an upload whose Redis
state has expired is still reported when the table holds rows of it for this service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from storage.errors import InvalidInput
from tasks.reports.params import only, uuid_param
from tasks.reports.sources import csv_jobs
from worker.runtime.database import database_enabled
from worker.runtime.redis_state import get_redis, key

logger = logging.getLogger(__name__)

KIND = "notifications"
COLUMNS = (
    "notification_id",
    "upload_id",
    "row_number",
    "recipient",
    "template_id",
    "template_type",
)
SCAN_COUNT = 1000


def check_params(params: Mapping[str, Any]) -> dict[str, str]:
    only(KIND, params, optional=("upload_id",))
    upload_id = uuid_param(params, "upload_id")
    return {"upload_id": upload_id} if upload_id else {}


def notifications_key(upload_id: str) -> str:
    return key("notifications", upload_id)


def source(service_id: str, params: Mapping[str, Any]) -> tuple[tuple[str, ...], Iterator[list]]:
    upload_id = check_params(params).get("upload_id")
    if upload_id is None:
        return COLUMNS, _service_rows(service_id)
    template = _job_template(service_id, upload_id)
    if template is None and database_enabled():
        from tasks.csv_batches.store.postgres import job_has_rows

        template = ("", "") if job_has_rows(service_id, upload_id) else None
    if template is None:
        raise InvalidInput(
            f"No upload {upload_id} for service {service_id}: nothing to report.",
            code="job_not_found",
        )
    return COLUMNS, _upload_rows(service_id, upload_id, template)


def _service_uploads(service_id: str) -> Iterator[str]:
    """The service's uploads, oldest first, one page at a time (each once)."""
    redis = get_redis()
    seen: set[str] = set()
    start = 0
    while True:
        page = redis.zrange(csv_jobs.service_uploads_key(service_id), start, start + SCAN_COUNT - 1)
        for upload_id in page:
            if upload_id not in seen:
                seen.add(upload_id)
                yield upload_id
        if len(page) < SCAN_COUNT:
            return
        start += SCAN_COUNT


def _service_rows(service_id: str) -> Iterator[list]:
    for upload_id in _service_uploads(service_id):
        template = _job_template(service_id, upload_id) or ("", "")
        yield from _upload_rows(service_id, upload_id, template)


def _job_template(service_id: str, upload_id: str) -> tuple[str, str] | None:
    """(template_id, template_type) of a job of this service, or None if it is not one.

    Ownership matters: an upload id from the params must belong to the requesting service.
    """
    return csv_jobs.job_template(service_id, upload_id)


def _upload_rows(service_id: str, upload_id: str, template: tuple[str, str]) -> Iterator[list]:
    if database_enabled():
        from tasks.csv_batches.store.postgres import iter_job_rows

        for row in iter_job_rows(service_id, upload_id):
            yield list(row)
        return
    redis = get_redis()
    skipped = 0
    for _, raw in redis.hscan_iter(notifications_key(upload_id), count=SCAN_COUNT):
        try:
            row = json.loads(raw)
        except (TypeError, ValueError):
            skipped += 1
            continue
        if not isinstance(row, dict) or row.get("service_id", service_id) != service_id:
            skipped += 1
            continue
        yield [
            row.get("notification_id", ""),
            row.get("upload_id") or upload_id,
            row.get("row_number", ""),
            row.get("recipient", ""),
            row.get("template_id") or template[0],
            row.get("template_type") or template[1],
        ]
    if skipped:
        logger.warning("skipped %d unreadable stored rows of upload %s", skipped, upload_id)
