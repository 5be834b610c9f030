"""Report generation against moto's server over HTTP: through the real worker and the core.

Covers the task result and object (metadata, tags, AES256), never replacing a finished report
(a repeat, and a race lost at the conditional completion, on both the PutObject and the
multipart path), failures half-way (the source, and S3) leaving nothing behind, recovery from
a run killed after completing or mid-upload, PROGRESS, and bad input.
"""

from __future__ import annotations

import time
import uuid

import pytest

from storage.errors import S3NotFound, S3Transient
from storage.objects import get_tags, head
from tasks.reports.generate import generate_report
from tasks.reports.writer import BATCH_ROWS
from tests.reports_fixtures import (
    SERVICE,
    object_keys,
    pending_uploads,
    read_report,
    report_bucket,
)
from worker.client import NotifyClient
from worker.runtime import queues

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("report_plugins")]


def new_id() -> str:
    return str(uuid.uuid4())


def expected_rows(count: int) -> list[list[str]]:
    return [["n", "name", "note"], *[[str(n), f"name-{n}", "x" * 40] for n in range(1, count + 1)]]


def test_task_writes_the_report_with_metadata_tags_and_encryption(celery_worker, s3, redis_client):
    request = new_id()
    result = NotifyClient().generate_report(request, SERVICE, "synthetic", {"rows": 500})
    value = result.get(timeout=60)
    key = f"synthetic_report/{request}.csv"
    assert value == {
        "status": "ok",
        "kind": "synthetic",
        "report_request_id": request,
        "bucket": report_bucket(),
        "key": key,
        "rows": 500,
        "size_bytes": head(report_bucket(), key).size,
    }
    assert read_report(key) == expected_rows(500)
    info = head(report_bucket(), key)
    assert info.server_side_encryption == "AES256"
    assert info.metadata["kind"] == "synthetic"
    assert info.metadata["service_id"] == SERVICE
    assert info.metadata["report_request_id"] == request
    assert info.metadata["generated_at"].endswith("Z")
    assert get_tags(report_bucket(), key) == {"expire-after-days": "7", "row-count": "500"}
    assert pending_uploads() == []


def test_a_second_run_is_skipped_and_changes_nothing(celery_worker, s3, redis_client):
    request = new_id()
    client = NotifyClient()
    first = client.generate_report(request, SERVICE, "synthetic", {"rows": 50}).get(timeout=60)
    etag = head(report_bucket(), first["key"]).etag
    again = client.generate_report(request, SERVICE, "synthetic", {"rows": 7}).get(timeout=60)
    assert again["status"] == "skipped"
    assert (again["key"], again["rows"], again["size_bytes"]) == (
        first["key"],
        50,
        first["size_bytes"],
    )
    assert head(report_bucket(), first["key"]).etag == etag
    assert read_report(first["key"]) == expected_rows(50)


@pytest.mark.parametrize("rows", [5, 400], ids=["single-put", "multipart"])
def test_losing_the_race_at_completion_keeps_the_winner_and_leaves_no_upload(s3, rows):
    """Another run completes after our HEAD check: only the conditional completion stops us.

    Remove ``if_none_match=True`` from the writer and this test fails (the winner is replaced).
    """
    request = new_id()
    key = f"racing_report/{request}.csv"
    result = generate_report(request, SERVICE, "racing", {"rows": rows, "at": 2, "key": key})
    assert result["status"] == "skipped"
    assert result["reason"] == "written_by_another_run"
    assert read_report(key) == [["n", "name", "note"], ["winner", "", ""]]
    assert pending_uploads() == []


def test_a_source_failing_half_way_leaves_no_object_and_no_upload(celery_worker, s3, redis_client):
    request = new_id()
    value = (
        NotifyClient().generate_report(request, SERVICE, "failing", {"after": 400}).get(timeout=60)
    )
    assert value["status"] == "failed"
    assert value["error_code"] == "internal_error"
    assert object_keys() == []
    assert pending_uploads() == []


def test_an_s3_fault_half_way_leaves_no_object_and_no_upload(s3):
    request = new_id()
    key = f"abort-midway_report/{request}.csv"
    # Real S3 answers NoSuchUpload; moto 5.2.5 answers 500 (a KeyError inside moto).
    with pytest.raises((S3NotFound, S3Transient)):
        generate_report(request, SERVICE, "abort-midway", {"rows": 400, "key": key})
    assert object_keys() == []
    assert pending_uploads() == []


def test_a_transient_s3_fault_half_way_aborts_and_a_retry_succeeds(s3):
    from botocore.exceptions import EndpointConnectionError

    parts = []

    def flaky(**_: object) -> None:
        parts.append(1)
        if len(parts) == 3:
            raise EndpointConnectionError(endpoint_url="http://s3.test")

    s3.meta.events.register("before-call.s3.UploadPart", flaky)
    request = new_id()
    try:
        with pytest.raises(S3Transient):
            generate_report(request, SERVICE, "synthetic", {"rows": 400})
    finally:
        s3.meta.events.unregister("before-call.s3.UploadPart", flaky)
    assert object_keys() == []
    assert pending_uploads() == []
    assert generate_report(request, SERVICE, "synthetic", {"rows": 400})["rows"] == 400


def test_progress_state_reports_rows_written(celery_worker, s3, redis_client, monkeypatch):
    monkeypatch.setenv("NOTIFY_REPORT_PROGRESS_EVERY", "20")
    request = new_id()
    result = NotifyClient().generate_report(request, SERVICE, "slow", {"rows": 200, "delay": 0.005})
    seen: list[int] = []
    deadline = time.monotonic() + 30
    while not result.ready() and time.monotonic() < deadline:
        if result.state == "PROGRESS":
            seen.append(result.info["rows"])
        time.sleep(0.05)
    assert result.get(timeout=30)["rows"] == 200
    # Rows are encoded in batches, so progress moves in whole batches, at least every 20 rows.
    assert len(set(seen)) >= 2, seen
    assert all(n % BATCH_ROWS == 0 or n == 200 for n in seen), seen
    assert seen == sorted(seen)


BAD_INPUT = [
    ("no-such-kind", {}, "unknown_kind"),
    ("uploads", {"from": "not a date"}, "invalid_params"),
    ("job-outcome", {}, "invalid_params"),
    ("notifications", {"upload_id": "5d6e7f80-1a2b-4c3d-8e9f-0a1b2c3d4e5f"}, "job_not_found"),
    ("ragged", {}, "bad_source_row"),
]


def test_bad_input_fails_with_a_clear_error_and_leaves_nothing(celery_worker, s3, redis_client):
    # One test for every case: each one is quick, the S3 fixture is not.
    pending = [
        (
            code,
            celery_worker.app.send_task(
                queues.REPORTS_GENERATE,
                kwargs={
                    "report_request_id": new_id(),
                    "service_id": SERVICE,
                    "kind": kind,
                    "params": params,
                },
                queue=queues.REPORTS,
            ),
        )
        for kind, params, code in BAD_INPUT
    ]
    for code, result in pending:
        value = result.get(timeout=60)
        assert (value["status"], value["error_code"]) == ("failed", code)
        assert value["error_message"]
    assert object_keys() == []
    assert pending_uploads() == []
