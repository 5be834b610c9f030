"""Backfill items for CSV jobs: uploads selected from the bucket, or a JSON-lines file of jobs.

CSV jobs need their template's type and placeholders, which the bucket does not hold (the
metadata has ``template_id`` only). They come, in this order, from the parameters the CSV
workflow records with a scheduled job (``processing_params``), from ``--templates FILE``
(JSON lines ``{"id", "type", "placeholders"}``, e.g. exported from the web app), or from
``--template-type``/``--placeholders`` given for every selected upload.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from storage.errors import InvalidInput, NotifyError
from storage.keys import csv_upload_prefix, parse_csv_upload_key, parse_timestamp, require_uuid
from storage.listing import iter_objects
from storage.objects import head_or_none
from storage.settings import get_settings
from worker.runtime.backfill_items import BackfillItem, bad_line, iter_jsonl, json_object

# --- CSV jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    id: str | None
    type: str
    placeholders: tuple[str, ...] = ()

    def as_kwarg(self, template_id: str) -> dict[str, Any]:
        return {"id": template_id, "type": self.type, "placeholders": list(self.placeholders)}


def parse_template_line(value: Any, number: int) -> Template:
    data = json_object(value, number)
    try:
        template_id = require_uuid(data.get("id"), "id")
    except InvalidInput as error:
        raise bad_line(number, error.message) from None
    kind = data.get("type")
    if kind not in ("sms", "email", "letter"):
        raise bad_line(number, "type must be sms, email or letter.")
    placeholders = data.get("placeholders") or []
    if not isinstance(placeholders, list) or not all(isinstance(p, str) for p in placeholders):
        raise bad_line(number, "placeholders must be a list of names.")
    return Template(template_id, kind, tuple(placeholders))


def load_templates(path: str | Path) -> dict[str, Template]:
    """``--templates FILE``: template id -> type and placeholders (a small table)."""
    return {t.id: t for t in (parse_template_line(v, n) for n, v in iter_jsonl(path)) if t.id}


@dataclass
class CsvSelection:
    """What ``backfill csv`` lists, and what it found (for the summary)."""

    source: str = "csv-upload"
    service_ids: tuple[str, ...] = ()
    prefix: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    templates: Mapping[str, Template] = field(default_factory=dict)
    default_template: Template | None = None  # --template-type / --placeholders
    options: Mapping[str, bool] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def parse_date_bound(value: str | None, what: str, *, end: bool = False) -> datetime | None:
    """ISO 8601 (naive = UTC); a bare date as ``--to`` means the end of that day."""
    if not value:
        return None
    moment = parse_timestamp(value, what)
    if end and len(value.strip()) == 10:  # YYYY-MM-DD
        moment += timedelta(days=1)
    return moment


def csv_items(selection: CsvSelection) -> Iterator[BackfillItem]:
    """Uploads in the selection whose job never finished, as ``process_batch`` kwargs.

    One listing per service (or the prefix, or the whole bucket), one HEAD per upload that the
    listing cannot rule out (its LastModified is never earlier than its upload).
    """
    from tasks.csv_batches.scheduling import job_queue

    bucket = get_settings().bucket(selection.source)
    if selection.service_ids:
        prefixes = [csv_upload_prefix(s) for s in selection.service_ids]
    else:
        prefixes = [selection.prefix or ""]
    for prefix in prefixes:
        for listed in iter_objects(bucket, prefix):
            parsed = parse_csv_upload_key(listed.key)
            if parsed is None:
                selection.count("not_an_upload")
                continue
            if selection.date_from and listed.last_modified < selection.date_from:
                selection.count("outside_dates")
                continue
            info = head_or_none(bucket, listed.key)
            if info is None:
                continue  # deleted since the listing
            metadata = info.metadata
            uploaded = _uploaded_at(metadata, info.last_modified)
            if (selection.date_from and uploaded < selection.date_from) or (
                selection.date_to and uploaded >= selection.date_to
            ):
                selection.count("outside_dates")
                continue
            if metadata.get("processing_status"):
                selection.count("already_finished")
                continue
            service_id, upload_id = parsed
            selection.count("selected")
            yield _csv_item(selection, service_id, upload_id, metadata, job_queue(metadata))


def _uploaded_at(metadata: Mapping[str, str], last_modified: datetime) -> datetime:
    try:
        return parse_timestamp(metadata["uploaded_at"], "uploaded_at")
    except (KeyError, InvalidInput):
        return last_modified


def _csv_item(
    selection: CsvSelection,
    service_id: str,
    upload_id: str,
    metadata: Mapping[str, str],
    queue: str,
) -> BackfillItem:
    from tasks.csv_batches.scheduling import scheduled_params

    kwargs: dict[str, Any] = {"service_id": service_id, "upload_id": upload_id}
    recorded = scheduled_params(dict(metadata))
    if recorded is not None:
        # A scheduled job: the web app's own parameters were recorded with the schedule.
        kwargs.update(
            {k: recorded[k] for k in ("template", "options", "sender_id") if k in recorded}
        )
        if metadata.get("scheduled_for"):
            kwargs["scheduled_for"] = metadata["scheduled_for"]
    else:
        template_id = metadata.get("template_id") or ""
        template = selection.templates.get(template_id) or selection.default_template
        if template is None:
            return BackfillItem(
                upload_id,
                error=InvalidInput(
                    f"no template type/placeholders for template_id {template_id or '(none)'}; "
                    "give --templates FILE or --template-type/--placeholders.",
                    code="no_template_info",
                ),
            )
        kwargs["template"] = template.as_kwarg(template.id or template_id)
        kwargs["options"] = dict(selection.options)
        if metadata.get("sender_id"):
            kwargs["sender_id"] = metadata["sender_id"]
    kwargs["source"] = selection.source
    try:
        _check_csv_kwargs(kwargs)
    except NotifyError as error:
        return BackfillItem(upload_id, error=error)
    return BackfillItem(upload_id, kwargs, queue=queue)


def _check_csv_kwargs(kwargs: Mapping[str, Any]) -> None:
    from tasks.csv_batches.spec import JobSpec

    JobSpec.from_kwargs(
        service_id=kwargs.get("service_id"),
        upload_id=kwargs.get("upload_id"),
        template=kwargs.get("template"),
        options=kwargs.get("options"),
        sender_id=kwargs.get("sender_id"),
        source=kwargs.get("source", "csv-upload"),
    )


CSV_JOB_FIELDS = ("service_id", "upload_id", "template", "options", "sender_id", "source")


def parse_csv_job_line(value: Any, number: int) -> BackfillItem:
    """One line of ``backfill csv --jobs FILE``: ``process_batch`` kwargs, plus an optional
    ``notification_count`` (the web app's, to pick the bulk queue when enqueued)."""
    from tasks.csv_batches.scheduling import job_queue

    data = json_object(value, number)
    unknown = sorted(str(k)[:40] for k in data if k not in (*CSV_JOB_FIELDS, "notification_count"))
    if unknown:
        raise bad_line(number, f"unknown field(s): {', '.join(unknown[:5])}.")
    kwargs = {k: data[k] for k in CSV_JOB_FIELDS if k in data and data[k] is not None}
    try:
        _check_csv_kwargs(kwargs)
        require_uuid(kwargs.get("upload_id"), "upload_id")
    except InvalidInput as error:
        raise bad_line(number, error.message, error.code) from None
    count = data.get("notification_count")
    queue = job_queue({"notification_count": str(count)}) if count is not None else None
    return BackfillItem(kwargs["upload_id"], kwargs, queue=queue)


def csv_job_items(path: str | Path, service_ids: Iterable[str] = ()) -> Iterator[BackfillItem]:
    wanted = set(service_ids)
    for number, value in iter_jsonl(path):
        item = parse_csv_job_line(value, number)
        if not wanted or item.kwargs["service_id"] in wanted:
            yield item
