"""What reports need to know about CSV jobs, in one place: which bucket, who owns it, template.

The CSV workflow owns the job state (``tasks.csv_batches.state``); this module only reads it.
An upload belongs to a service when its Redis job state says so, or — once that state has
expired — when its CSV object sits under the service's prefix in the csv-upload or contact-list
bucket. Another service's upload is reported as not found, never read.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from storage.keys import csv_upload_key
from storage.objects import ObjectInfo, head_or_none
from storage.settings import get_settings
from tasks.csv_batches import state as csv_state

CSV_PURPOSES = ("csv-upload", "contact-list")


def service_uploads_key(service_id: str) -> str:
    """The CSV workflow's sorted set of a service's recent jobs (score: start time)."""
    return csv_state.service_uploads_key(service_id)


def _own_state(service_id: str, upload_id: str) -> csv_state.JobState | bool | None:
    """The job state if it is this service's; False if another's; None if it does not say."""
    state = csv_state.load_job(upload_id)
    if state is None or not state.service_id:
        return None  # no state, or one that names no service: the object decides
    return state if state.service_id == service_id else False


def _csv_object(service_id: str, upload_id: str) -> ObjectInfo | None:
    settings = get_settings()
    key = csv_upload_key(service_id, upload_id)
    for purpose in CSV_PURPOSES:
        info = head_or_none(settings.bucket(purpose), key)
        if info is not None:
            return info
    return None


def _template(params: Mapping[str, Any] | None) -> tuple[str, str]:
    template = (params or {}).get("template")
    if not isinstance(template, Mapping):
        return "", ""
    return str(template.get("id") or ""), str(template.get("type") or "")


def _json(raw: str | None) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def job_source(service_id: str, upload_id: str) -> str | None:
    """The bucket purpose (csv-upload / contact-list) holding the service's upload, or None."""
    state = _own_state(service_id, upload_id)
    if state is False:
        return None
    if state and state.source in CSV_PURPOSES:
        return state.source
    info = _csv_object(service_id, upload_id)
    if info is None:
        return None
    return get_settings().purpose_of(info.bucket)


def job_template(service_id: str, upload_id: str) -> tuple[str, str] | None:
    """(template_id, template_type) of the service's job ``upload_id``; None if not its job.

    Either part is empty when nothing records it any more.
    """
    state = _own_state(service_id, upload_id)
    if state is False:
        return None
    if state:
        return _template(_json(state.params))
    info = _csv_object(service_id, upload_id)
    if info is None:
        return None
    template_id, template_type = _template(_json(info.metadata.get("processing_params")))
    return template_id or info.metadata.get("template_id", ""), template_type
