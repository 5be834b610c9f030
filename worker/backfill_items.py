"""Where the backfills' items come from: S3 listings and JSON-lines files, streamed.

Each function yields ``BackfillItem``s for ``worker.backfill.run_backfill``; an item the source
already knows is bad carries its error (reported as failed, never run). Files are checked whole
before anything runs (``check_jsonl``), so a typo on line 90,000 does not stop a run half-way.

CSV jobs need their template's type and placeholders, which the bucket does not hold (the
metadata has ``template_id`` only). They come, in this order, from the parameters the CSV
workflow records with a scheduled job (``processing_params``), from ``--templates FILE``
(JSON lines ``{"id", "type", "placeholders"}``, e.g. exported from the web app), or from
``--template-type``/``--placeholders`` given for every selected upload.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from storage.config import get_settings
from storage.errors import InvalidInput, NotifyError
from storage.keys import csv_upload_prefix, parse_csv_upload_key, parse_timestamp, require_uuid
from storage.listing import iter_objects
from storage.objects import head_or_none
from worker.backfill import BackfillItem

MAX_LINE_CHARS = 64 * 1024
MAX_BAD_LINES_SHOWN = 20
REPORTS_NAMESPACE = uuid.UUID("5f0c8a8e-3b1a-4d8e-9a53-6a8f2b0f4c11")  # backfill report ids


# --- JSON-lines files --------------------------------------------------------------------------


def read_lines(path: str | Path) -> Iterator[tuple[int, str | None]]:
    """(line number, text) of the non-blank lines, one in memory at a time; a line over
    ``MAX_LINE_CHARS`` comes out as ``None`` (never held whole)."""
    try:
        handle = open(path, encoding="utf-8-sig")  # noqa: SIM115 - closed below
    except OSError as error:
        raise InvalidInput(
            f"cannot read {path}: {error.strerror}.", code="unreadable_file"
        ) from None
    with handle:
        number = 0
        try:
            while text := handle.readline(MAX_LINE_CHARS + 1):
                number += 1
                if len(text) > MAX_LINE_CHARS and not text.endswith("\n"):
                    while (rest := handle.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                        pass
                    yield number, None
                elif text.strip():
                    yield number, text
        except UnicodeDecodeError:
            raise InvalidInput(f"{path} is not UTF-8 text.", code="not_utf8") from None


def _json(text: str | None, number: int) -> Any:
    if text is None:
        raise _bad_line(number, f"longer than {MAX_LINE_CHARS} characters.", "line_too_long")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise _bad_line(number, f"not JSON ({error.msg}).", "invalid_json") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-blank line; ``InvalidInput`` naming the line
    for one that is not JSON or too long."""
    for number, text in read_lines(path):
        yield number, _json(text, number)


def check_jsonl(
    path: str | Path, parse: Callable[[Any, int], Any]
) -> tuple[int, list[InvalidInput]]:
    """Check the whole file with ``parse(value, line_number)`` without stopping at the first
    bad line: (number of good lines, the first ``MAX_BAD_LINES_SHOWN`` bad ones)."""
    good = 0
    bad: list[InvalidInput] = []
    for number, text in read_lines(path):
        try:
            parse(_json(text, number), number)
            good += 1
        except InvalidInput as error:
            bad.append(error)
            if len(bad) >= MAX_BAD_LINES_SHOWN:
                break
    return good, bad


def _bad_line(number: int, message: str, code: str = "invalid_line") -> InvalidInput:
    return InvalidInput(f"line {number}: {message}", code=code)


def _object(value: Any, number: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad_line(number, "must be a JSON object.")
    return value


# --- CSV jobs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    id: str | None
    type: str
    placeholders: tuple[str, ...] = ()

    def as_kwarg(self, template_id: str) -> dict[str, Any]:
        return {"id": template_id, "type": self.type, "placeholders": list(self.placeholders)}


def parse_template_line(value: Any, number: int) -> Template:
    data = _object(value, number)
    try:
        template_id = require_uuid(data.get("id"), "id")
    except InvalidInput as error:
        raise _bad_line(number, error.message) from None
    kind = data.get("type")
    if kind not in ("sms", "email", "letter"):
        raise _bad_line(number, "type must be sms, email or letter.")
    placeholders = data.get("placeholders") or []
    if not isinstance(placeholders, list) or not all(isinstance(p, str) for p in placeholders):
        raise _bad_line(number, "placeholders must be a list of names.")
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

    data = _object(value, number)
    unknown = sorted(str(k)[:40] for k in data if k not in (*CSV_JOB_FIELDS, "notification_count"))
    if unknown:
        raise _bad_line(number, f"unknown field(s): {', '.join(unknown[:5])}.")
    kwargs = {k: data[k] for k in CSV_JOB_FIELDS if k in data and data[k] is not None}
    try:
        _check_csv_kwargs(kwargs)
        require_uuid(kwargs.get("upload_id"), "upload_id")
    except InvalidInput as error:
        raise _bad_line(number, error.message, error.code) from None
    count = data.get("notification_count")
    queue = job_queue({"notification_count": str(count)}) if count is not None else None
    return BackfillItem(kwargs["upload_id"], kwargs, queue=queue)


def csv_job_items(path: str | Path, service_ids: Iterable[str] = ()) -> Iterator[BackfillItem]:
    wanted = set(service_ids)
    for number, value in iter_jsonl(path):
        item = parse_csv_job_line(value, number)
        if not wanted or item.kwargs["service_id"] in wanted:
            yield item


# --- reports -----------------------------------------------------------------------------------


def report_request_id(service_id: str, kind: str, params: Mapping[str, Any], label: str) -> str:
    """A deterministic id, so rerunning the same backfill finds its reports instead of making
    new ones (the report core never replaces a finished report)."""
    blob = json.dumps([service_id, kind, params, label], sort_keys=True)
    return str(uuid.uuid5(REPORTS_NAMESPACE, blob))


def _report_kwargs(
    service_id: Any, kind: Any, params: Any, report_id: Any, label: str
) -> dict[str, Any]:
    from tasks.reports.kinds import get_kind

    require_uuid(service_id, "service_id")
    found = get_kind(kind)  # InvalidInput unknown_kind
    found.checked_params(params)  # InvalidInput invalid_params
    if report_id is None:
        report_id = report_request_id(service_id, found.name, params or {}, label)
    require_uuid(report_id, "report_request_id")
    return {
        "report_request_id": report_id,
        "service_id": service_id,
        "kind": found.name,
        "params": dict(params or {}),
    }


REPORT_FIELDS = ("report_request_id", "service_id", "kind", "params")


def parse_report_line(value: Any, number: int, label: str = "") -> BackfillItem:
    """One line of ``backfill reports --file FILE``: ``notify.reports.generate`` kwargs; a
    missing ``report_request_id`` is derived from the line (stable across reruns)."""
    data = _object(value, number)
    unknown = sorted(str(k)[:40] for k in data if k not in REPORT_FIELDS)
    if unknown:
        raise _bad_line(number, f"unknown field(s): {', '.join(unknown[:5])}.")
    try:
        kwargs = _report_kwargs(
            data.get("service_id"),
            data.get("kind"),
            data.get("params"),
            data.get("report_request_id"),
            label,
        )
    except InvalidInput as error:
        raise _bad_line(number, error.message, error.code) from None
    return BackfillItem(kwargs["report_request_id"], kwargs)


def report_file_items(path: str | Path, label: str = "") -> Iterator[BackfillItem]:
    for number, value in iter_jsonl(path):
        yield parse_report_line(value, number, label)


def report_grid_items(
    kinds: Iterable[str], service_ids: Iterable[str], params: Mapping[str, Any], label: str = ""
) -> list[BackfillItem]:
    """``--kind`` x ``--service-id``: every combination, with the same params (a small list)."""
    items = []
    for service_id in service_ids:
        for kind in kinds:
            kwargs = _report_kwargs(service_id, kind, params, None, label)
            items.append(BackfillItem(kwargs["report_request_id"], kwargs))
    return items
