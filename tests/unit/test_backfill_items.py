"""The backfills' item sources: JSON-lines files, report ids, date bounds, CSV job lines."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from storage.errors import InvalidInput
from tasks.csv_batches import backfill as csv_sources
from tasks.reports import backfill as report_sources
from worker.runtime import backfill_items as sources

SERVICE = str(uuid.uuid4())
TEMPLATE = {"id": str(uuid.uuid4()), "type": "sms", "placeholders": ["name"]}


def write(tmp_path, text: str | bytes):
    path = tmp_path / "items.jsonl"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_jsonl_skips_blank_lines_and_numbers_lines(tmp_path):
    path = write(tmp_path, '\n{"a": 1}\n   \n{"a": 2}\n')
    assert list(sources.iter_jsonl(path)) == [(2, {"a": 1}), (4, {"a": 2})]


def test_jsonl_refuses_with_the_line_number(tmp_path):
    with pytest.raises(InvalidInput, match="line 2: not JSON"):
        list(sources.iter_jsonl(write(tmp_path, '{"a": 1}\n{oops\n')))
    huge = "[" + "1," * sources.MAX_LINE_CHARS + "1]\n"
    with pytest.raises(InvalidInput, match="line 1: longer than") as error:
        list(sources.iter_jsonl(write(tmp_path, huge)))
    assert error.value.code == "line_too_long"
    with pytest.raises(InvalidInput, match="not UTF-8"):
        list(sources.iter_jsonl(write(tmp_path, b'{"a": "\xff"}\n')))
    with pytest.raises(InvalidInput, match="cannot read"):
        list(sources.iter_jsonl(tmp_path / "missing.jsonl"))


def test_check_reports_every_bad_line_and_counts_the_good(tmp_path):
    lines = ['{"kind": "uploads"}', "nope", "[1]", '{"kind": "x"}', "x" * 70_000]
    path = write(tmp_path, "\n".join(lines) + "\n")

    def parse(value, number):
        if not isinstance(value, dict):
            raise InvalidInput(f"line {number}: not an object")
        return value

    good, bad = sources.check_jsonl(path, parse)
    assert good == 2
    assert [e.message.split(":")[0] for e in bad] == ["line 2", "line 3", "line 5"]


def test_report_ids_are_stable_and_depend_on_everything():
    one = report_sources.report_request_id(SERVICE, "uploads", {"from": "2024-01-01"}, "")
    assert one == report_sources.report_request_id(SERVICE, "uploads", {"from": "2024-01-01"}, "")
    assert uuid.UUID(one)
    others = {
        report_sources.report_request_id(SERVICE, "uploads", {}, ""),
        report_sources.report_request_id(SERVICE, "storage-usage", {"from": "2024-01-01"}, ""),
        report_sources.report_request_id(SERVICE, "uploads", {"from": "2024-01-01"}, "june"),
        report_sources.report_request_id(str(uuid.uuid4()), "uploads", {"from": "2024-01-01"}, ""),
    }
    assert one not in others and len(others) == 4


def test_report_lines_are_checked_before_any_s3_call():
    line = {"service_id": SERVICE, "kind": "storage-usage"}
    item = report_sources.parse_report_line(line, 1)
    assert item.kwargs == {
        "report_request_id": item.id,
        "service_id": SERVICE,
        "kind": "storage-usage",
        "params": {},
    }
    for bad, code in [
        ({"service_id": "x", "kind": "uploads"}, "invalid_id"),
        ({"service_id": SERVICE, "kind": "no-such-kind"}, "unknown_kind"),
        ({"service_id": SERVICE, "kind": "uploads", "params": {"from": "nope"}}, None),
        ({"service_id": SERVICE, "kind": "uploads", "extra": 1}, "invalid_line"),
        ([1, 2], "invalid_line"),
    ]:
        with pytest.raises(InvalidInput, match=r"^line 7: ") as error:
            report_sources.parse_report_line(bad, 7)
        if code:
            assert error.value.code == code


def test_report_grid_is_every_combination():
    services = [str(uuid.uuid4()) for _ in range(3)]
    items = report_sources.report_grid_items(["uploads", "storage-usage"], services, {})
    assert len(items) == 6 and len({i.id for i in items}) == 6


def test_date_bounds():
    assert csv_sources.parse_date_bound(None, "--from") is None
    assert csv_sources.parse_date_bound("2024-05-01", "--from") == datetime(2024, 5, 1, tzinfo=UTC)
    # A bare date as the upper bound includes that whole day.
    assert csv_sources.parse_date_bound("2024-05-01", "--to", end=True) == datetime(
        2024, 5, 2, tzinfo=UTC
    )
    assert csv_sources.parse_date_bound("2024-05-01T12:00:00", "--to", end=True) == datetime(
        2024, 5, 1, 12, tzinfo=UTC
    )
    with pytest.raises(InvalidInput):
        csv_sources.parse_date_bound("yesterday", "--from")


def test_csv_job_lines(monkeypatch):
    from worker.runtime.settings import reload_worker_settings

    upload_id = str(uuid.uuid4())
    line = {"service_id": SERVICE, "upload_id": upload_id, "template": TEMPLATE}
    item = csv_sources.parse_csv_job_line(line, 1)
    assert item.id == upload_id and item.queue is None and item.kwargs == line

    monkeypatch.setenv("NOTIFY_BULK_THRESHOLD_ROWS", "10")
    reload_worker_settings()
    try:
        big = csv_sources.parse_csv_job_line({**line, "notification_count": 11}, 1)
        small = csv_sources.parse_csv_job_line({**line, "notification_count": 10}, 1)
    finally:
        monkeypatch.delenv("NOTIFY_BULK_THRESHOLD_ROWS")
        reload_worker_settings()
    assert (big.queue, small.queue) == ("csv-batches-bulk", "csv-batches")
    assert "notification_count" not in big.kwargs

    for bad in [
        {"service_id": SERVICE, "upload_id": upload_id},  # no template
        {**line, "template": {**TEMPLATE, "type": "fax"}},
        {**line, "upload_id": "../x"},
        {**line, "scheduled_for": "2024-01-01"},  # not a backfill field
    ]:
        with pytest.raises(InvalidInput, match=r"^line 3: "):
            csv_sources.parse_csv_job_line(bad, 3)


def test_templates_file(tmp_path):
    path = write(tmp_path, json.dumps(TEMPLATE) + "\n")
    [(template_id, template)] = csv_sources.load_templates(path).items()
    assert template_id == TEMPLATE["id"]
    assert template.as_kwarg(template_id) == TEMPLATE
    with pytest.raises(InvalidInput, match="line 1: type must be"):
        csv_sources.load_templates(write(tmp_path, json.dumps({**TEMPLATE, "type": "fax"})))
