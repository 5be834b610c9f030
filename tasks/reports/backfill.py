"""Backfill items for reports: a JSON-lines file of requests, or a grid of services and kinds."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from storage.errors import InvalidInput
from storage.keys import require_uuid
from worker.runtime.backfill_items import BackfillItem, bad_line, iter_jsonl, json_object

REPORTS_NAMESPACE = uuid.UUID("5f0c8a8e-3b1a-4d8e-9a53-6a8f2b0f4c11")  # backfill report ids


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
    data = json_object(value, number)
    unknown = sorted(str(k)[:40] for k in data if k not in REPORT_FIELDS)
    if unknown:
        raise bad_line(number, f"unknown field(s): {', '.join(unknown[:5])}.")
    try:
        kwargs = _report_kwargs(
            data.get("service_id"),
            data.get("kind"),
            data.get("params"),
            data.get("report_request_id"),
            label,
        )
    except InvalidInput as error:
        raise bad_line(number, error.message, error.code) from None
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
