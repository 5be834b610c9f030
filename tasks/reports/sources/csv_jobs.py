"""What reports need to know about CSV jobs, in one place: ownership and template.

The CSV workflow owns the job state; this module only reads it. An upload belongs to a service
when the service's upload set lists it, or when its CSV object sits under the service's prefix
in the csv-upload or contact-list bucket.
"""

from __future__ import annotations

from storage.config import get_settings
from storage.keys import csv_upload_key
from storage.objects import head_or_none
from worker.redis_state import get_redis, key

CSV_PURPOSES = ("csv-upload", "contact-list")


def service_uploads_key(service_id: str) -> str:
    """The CSV workflow's sorted set of a service's uploads."""
    return key("service", service_id, "uploads")


def job_template(service_id: str, upload_id: str) -> tuple[str, str] | None:
    """(template_id, template_type) of the service's job ``upload_id``; None if not its job.

    Either part may be empty when nothing records it.
    """
    listed = get_redis().zscore(service_uploads_key(service_id), upload_id) is not None
    settings = get_settings()
    for purpose in CSV_PURPOSES:
        info = head_or_none(settings.bucket(purpose), csv_upload_key(service_id, upload_id))
        if info is not None:
            return info.metadata.get("template_id", ""), ""
    return ("", "") if listed else None
