"""Each built-in kind against moto's server over HTTP (and a private Redis), with its content.

``job-outcome`` and ``notifications`` run on a real CSV job processed by the thread worker, so
the report reads exactly what the CSV workflow and the built-in sink recorded.
"""

from __future__ import annotations

import importlib.util
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import InvalidInput
from storage.keys import csv_upload_key, isoformat
from storage.objects import head, put_bytes
from storage.settings import get_settings
from tasks.reports.generate import generate_report
from tests.reports_fixtures import (
    OTHER_SERVICE,
    SERVICE,
    object_keys,
    pending_uploads,
    read_report,
)
from worker.client import NotifyClient
from worker.runtime import queues

pytestmark = pytest.mark.integration

TEMPLATE = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
HAS_OUTCOMES = importlib.util.find_spec("tasks.csv_batches.row_outcomes") is not None


def new_id() -> str:
    return str(uuid.uuid4())


def bucket(purpose: str) -> str:
    return get_settings().bucket(purpose)


DEFAULT_CSV = b"phone number\n07700900123\n"


def put_upload(service_id: str, upload_id: str, body: bytes = DEFAULT_CSV, **meta: str):
    put_bytes(bucket("csv-upload"), csv_upload_key(service_id, upload_id), body, metadata=meta)
    return head(bucket("csv-upload"), csv_upload_key(service_id, upload_id))


def test_uploads_report_lists_the_services_uploads_with_metadata_and_filters(s3):
    first, second = sorted([new_id(), new_id()])
    long_ago = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    put_upload(
        SERVICE,
        first,
        original_file_name="=cmd|' /C calc'!A0.csv",
        template_id=TEMPLATE,
        notification_count="1",
        valid="True",
        processing_status="finished",
        uploaded_at=isoformat(long_ago),
    )
    recent = put_upload(SERVICE, second, original_file_name="b.csv", valid="True")
    put_upload(OTHER_SERVICE, new_id(), original_file_name="other.csv")
    put_bytes(bucket("csv-upload"), f"service-{SERVICE}-notify/notes.txt", b"not an upload")

    result = generate_report(new_id(), SERVICE, "uploads", {})
    assert result["rows"] == 2
    assert read_report(result["key"]) == [
        [
            "upload_id",
            "original_file_name",
            "template_id",
            "notification_count",
            "valid",
            "processing_status",
            "uploaded_at",
            "size_bytes",
        ],
        [first, "'=cmd|' /C calc'!A0.csv", TEMPLATE, "1", "True", "finished",
         isoformat(long_ago), str(recent.size)],
        [second, "b.csv", "", "", "True", "", isoformat(recent.last_modified), str(recent.size)],
    ]  # fmt: skip

    window = {"from": isoformat(long_ago - timedelta(days=1)), "to": isoformat(long_ago)}
    assert generate_report(new_id(), SERVICE, "uploads", window)["rows"] == 0  # `to` exclusive
    window["to"] = isoformat(long_ago + timedelta(seconds=1))
    only_old = generate_report(new_id(), SERVICE, "uploads", window)
    assert [r[0] for r in read_report(only_old["key"])[1:]] == [first]
    since = {"from": isoformat(long_ago + timedelta(days=1))}
    only_new = generate_report(new_id(), SERVICE, "uploads", since)
    assert [r[0] for r in read_report(only_new["key"])[1:]] == [second]


def test_storage_usage_groups_every_bucket_by_purpose_and_service(s3):
    a, b = sorted([SERVICE, OTHER_SERVICE])
    put_upload(a, new_id(), b"x" * 10)
    put_upload(a, new_id(), b"x" * 5)
    put_upload(b, new_id(), b"x" * 7)
    put_bytes(bucket("transient-letters"), f"service-{a}/{new_id()}.pdf", b"%PDF" * 3)
    put_bytes(bucket("logo"), "temp-logo.png", b"png")
    put_bytes(bucket("mou"), "crown.pdf", b"=pdf")

    result = generate_report(new_id(), SERVICE, "storage-usage", {})
    records = read_report(result["key"])
    assert records[0] == [
        "bucket", "purpose", "service_id", "objects", "bytes", "oldest", "newest",
        "noncurrent_versions", "noncurrent_bytes", "delete_markers",
    ]  # fmt: skip
    rows = {(r[1], r[2]): r for r in records[1:]}
    assert rows[("csv-upload", a)][:5] == [bucket("csv-upload"), "csv-upload", a, "2", "15"]
    assert rows[("csv-upload", b)][3:5] == ["1", "7"]
    assert rows[("transient-letters", a)][3:5] == ["1", "12"]
    assert rows[("logo", "")][3:5] == ["1", "3"]
    assert rows[("mou", "")][3:5] == ["1", "4"]
    assert rows[("letters-pdf", "")] == [
        bucket("letters-pdf"), "letters-pdf", "", "0", "0", "", "", "0", "0", "0"
    ]  # fmt: skip
    assert {purpose for purpose, _ in rows} == set(get_settings().bucket_names)
    oldest, newest = rows[("csv-upload", a)][5:7]
    assert oldest <= newest and newest.endswith("Z")


@pytest.mark.skipif(not HAS_OUTCOMES, reason="tasks.csv_batches.row_outcomes not there yet")
def test_job_outcome_and_notifications_reports_of_a_real_csv_job(celery_worker, s3, redis_client):
    upload_id = new_id()
    body = (
        b"phone number,name\r\n"
        b"07700900123,Alice\r\n"
        b"+ 447629852559,Bob\r\n"
        b'07700 900456,=HYPERLINK("http://x")\r\n'
    )
    put_upload(SERVICE, upload_id, body, original_file_name="job.csv", template_id=TEMPLATE,
               notification_count="3", valid="True")  # fmt: skip
    client = NotifyClient()
    job = client.process_csv(
        SERVICE, upload_id, template_id=TEMPLATE, template_type="sms", placeholders=["name"]
    ).get(timeout=60)
    assert job["status"] == "ok", job

    outcome = client.generate_report(new_id(), SERVICE, "job-outcome", {"upload_id": upload_id})
    result = outcome.get(timeout=60)
    assert result["status"] == "ok", result
    records = read_report(result["key"])
    assert records[0] == [
        "row_number", "recipient", "status", "error_code", "error_message", "notification_id"
    ]  # fmt: skip
    ns = uuid.UUID(upload_id)
    assert records[1] == ["1", "447700900123", "dispatched", "", "", str(uuid.uuid5(ns, "1"))]
    assert records[2][0] == "2"
    assert records[2][1].startswith("'+")  # a raw invalid recipient, neutralised
    assert records[2][2:4] == ["invalid", "invalid_number"]
    assert records[2][4] and records[2][5] == ""
    assert records[3] == ["3", "447700900456", "dispatched", "", "", str(uuid.uuid5(ns, "3"))]

    notes = client.generate_report(new_id(), SERVICE, "notifications", {"upload_id": upload_id})
    result = notes.get(timeout=60)
    assert result["status"] == "ok", result
    records = read_report(result["key"])
    assert records[0] == [
        "notification_id", "upload_id", "row_number", "recipient", "template_id", "template_type"
    ]  # fmt: skip
    assert sorted(records[1:], key=lambda r: int(r[2])) == [
        [str(uuid.uuid5(ns, "1")), upload_id, "1", "447700900123", TEMPLATE, "sms"],
        [str(uuid.uuid5(ns, "3")), upload_id, "3", "447700900456", TEMPLATE, "sms"],
    ]
    everything = generate_report(new_id(), SERVICE, "notifications", {})
    assert everything["rows"] == 2

    # Another service cannot read this job through either kind; nothing is written.
    before = object_keys()
    for kind in ("job-outcome", "notifications"):
        with pytest.raises(InvalidInput) as error:
            generate_report(new_id(), OTHER_SERVICE, kind, {"upload_id": upload_id})
        assert error.value.code == "job_not_found"
    assert object_keys() == before
    assert pending_uploads() == []


def test_notifications_report_reads_stored_rows_defensively(s3, redis_client):
    """Rows as the sink stores them, plus junk: unreadable rows and other services' are skipped."""
    import json

    from tasks.csv_batches import state as csv_state

    first, second = new_id(), new_id()
    put_upload(SERVICE, first, template_id=TEMPLATE)  # no Redis job state: owned by its key
    put_upload(SERVICE, second, template_id=TEMPLATE)
    hash_one = csv_state.notifications_key(first)
    redis_client.hset(hash_one, mapping={
        "a": json.dumps({"notification_id": "a", "row_number": 1, "recipient": "=1+2",
                         "service_id": SERVICE, "template_type": "email"}),
        "b": "not json",
        "c": json.dumps({"notification_id": "c", "row_number": 2, "service_id": OTHER_SERVICE}),
        "d": json.dumps(["a", "list"]),
    })  # fmt: skip
    redis_client.hset(
        csv_state.notifications_key(second),
        "e",
        json.dumps({"notification_id": "e", "row_number": 7, "recipient": "x@example.com"}),
    )
    uploads = csv_state.service_uploads_key(SERVICE)
    redis_client.zadd(uploads, {first: 1, second: 2})
    redis_client.expire(uploads, 60)

    one = generate_report(new_id(), SERVICE, "notifications", {"upload_id": first})
    assert read_report(one["key"])[1:] == [["a", first, "1", "'=1+2", TEMPLATE, "email"]]
    both = generate_report(new_id(), SERVICE, "notifications", {})
    assert read_report(both["key"])[1:] == [
        ["a", first, "1", "'=1+2", TEMPLATE, "email"],
        ["e", second, "7", "x@example.com", TEMPLATE, ""],
    ]
    with pytest.raises(InvalidInput) as error:
        generate_report(new_id(), OTHER_SERVICE, "notifications", {"upload_id": first})
    assert error.value.code == "job_not_found"


@pytest.mark.usefixtures("report_plugins")
def test_a_plugin_kind_runs_on_the_worker_with_cells_neutralised(celery_worker, s3, redis_client):
    result = celery_worker.app.send_task(
        queues.REPORTS_GENERATE,
        kwargs={"report_request_id": new_id(), "service_id": SERVICE, "kind": "dangerous",
                "params": {}},
        queue=queues.REPORTS,
    ).get(timeout=60)  # fmt: skip
    assert result["status"] == "ok", result
    records = read_report(result["key"])
    assert records[0] == ["'=header", "name", "note"]
    assert [r[0] for r in records[1:]] == [
        "'=1+1", "'+44 7700 900123", "'-2", "'@SUM(A1)", "'\tx", "'\rx", "ok", "", "a=b"
    ]  # fmt: skip
    assert records[2][2] == "'+44 7700 900123!"
