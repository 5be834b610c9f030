"""``notify-worker backfill csv`` against moto over HTTP: listing mode and ``--jobs FILE``."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from storage.keys import csv_upload_key
from storage.settings import get_settings
from tests.csv_fixtures import TEMPLATE_ID, WEB_APP_METADATA, csv_text, sms_rows, upload
from tests.ops_fixtures import invoke

pytestmark = pytest.mark.integration

BODY = csv_text(["phone number", "name"], sms_rows(4, bad_every=4))  # 3 valid, 1 invalid


def metadata_of(s3, service_id: str, upload_id: str) -> dict[str, str]:
    bucket = get_settings().bucket("csv-upload")
    return s3.head_object(Bucket=bucket, Key=csv_upload_key(service_id, upload_id))["Metadata"]


def wait_stored(redis_client, upload_ids: list[str], rows: int = 3) -> None:
    """The built-in sink (on the session's worker) stores each job's valid rows a moment later:
    wait, so no sink message of ours is left in the broker for another test."""
    deadline = time.monotonic() + 30
    stored = lambda: [redis_client.hlen(f"notify:notifications:{u}") for u in upload_ids]  # noqa: E731
    while stored() != [rows] * len(upload_ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert stored() == [rows] * len(upload_ids)


def run(*args: str):
    result = invoke("backfill", "csv", *args, "--json")
    return result, (json.loads(result.stdout) if result.stdout.strip() else None)


def test_listing_runs_unfinished_uploads_once(celery_worker, s3, redis_client, tmp_path):
    service = str(uuid.uuid4())
    todo = [upload(s3, BODY, service_id=service) for _ in range(2)]
    finished = upload(
        s3, BODY, service_id=service, metadata={**WEB_APP_METADATA, "processing_status": "finished"}
    )
    other_service_id = str(uuid.uuid4())
    other_service = upload(s3, BODY, service_id=other_service_id)
    args = ["--service-id", service, "--template-type", "sms", "--placeholders", "name"]

    result, summary = run(*args, "--state-dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert summary["statuses"] == {"ok": 2}
    assert "already finished 1" in result.output and "selected 2" in result.output
    for upload_id in todo:
        meta = metadata_of(s3, service, upload_id)
        assert meta["processing_status"] == "finished"
        assert (meta["processing_rows_dispatched"], meta["processing_rows_invalid"]) == ("3", "1")
    assert "processing_rows_total" not in metadata_of(s3, service, finished)
    assert "processing_status" not in metadata_of(s3, other_service_id, other_service)
    wait_stored(redis_client, todo)

    # A rerun finds their outcomes recorded and runs nothing.
    again, summary = run(*args, "--state-dir", str(tmp_path))
    assert again.exit_code == 0
    assert summary["done"] == 0 and "already finished 3" in again.output


def test_dry_run_and_dates_select_without_running(s3, redis_client, tmp_path):
    service = str(uuid.uuid4())
    upload_id = upload(s3, BODY, service_id=service)
    args = ["--service-id", service, "--template-type", "sms", "--placeholders", "name"]

    result, summary = run(*args, "--dry-run", "-v", "--state-dir", str(tmp_path))
    assert result.exit_code == 0
    assert summary["planned"] == 1 and f"would run {upload_id}" in result.output
    assert "processing_status" not in metadata_of(s3, service, upload_id)

    result, summary = run(*args, "--from", "2999-01-01", "--state-dir", str(tmp_path))
    assert result.exit_code == 0 and summary["done"] == 0 and summary["planned"] == 0
    assert "outside dates 1" in result.output
    result, summary = run(*args, "--to", "2000-01-01", "--dry-run", "--state-dir", str(tmp_path))
    assert summary["planned"] == 0


def test_template_info_is_needed_unless_recorded_with_a_schedule(
    celery_worker, s3, redis_client, tmp_path
):
    service = str(uuid.uuid4())
    plain = upload(s3, BODY, service_id=service)
    params = {
        "template": {"id": TEMPLATE_ID, "type": "sms", "placeholders": ["name"]},
        "options": {},
        "source": "csv-upload",
    }
    scheduled = upload(
        s3,
        BODY,
        service_id=service,
        metadata={
            **WEB_APP_METADATA,
            "scheduled_for": "2020-01-01T09:00:00Z",  # due long ago: runs now
            "processing_params": json.dumps(params, separators=(",", ":")),
        },
    )
    result, summary = run("--service-id", service, "--state-dir", str(tmp_path))
    assert result.exit_code == 1
    assert summary["statuses"] == {"ok": 1}
    [failure] = summary["failures"]
    assert failure["item_id"] == plain and failure["error_code"] == "no_template_info"
    assert metadata_of(s3, service, scheduled)["processing_status"] == "finished"

    # Template info by template id, from a file (e.g. exported from the web app).
    templates = Path(tmp_path / "templates.jsonl")
    templates.write_text(json.dumps({"id": TEMPLATE_ID, "type": "sms", "placeholders": ["name"]}))
    result, summary = run(
        "--service-id", service, "--templates", str(templates), "--state-dir", str(tmp_path)
    )
    assert result.exit_code == 0, result.output
    assert summary["statuses"] == {"ok": 1}
    assert metadata_of(s3, service, plain)["processing_status"] == "finished"
    wait_stored(redis_client, [scheduled, plain])


def test_jobs_file_enqueued_to_the_worker(celery_worker, s3, redis_client, tmp_path):
    service = str(uuid.uuid4())
    upload_ids = [upload(s3, BODY, service_id=service) for _ in range(2)]
    jobs = Path(tmp_path / "jobs.jsonl")
    jobs.write_text(
        "\n".join(
            json.dumps(
                {
                    "service_id": service,
                    "upload_id": upload_id,
                    "template": {"id": TEMPLATE_ID, "type": "sms", "placeholders": ["name"]},
                    "notification_count": 4,
                }
            )
            for upload_id in upload_ids
        )
    )
    result, summary = run(
        "--jobs", str(jobs), "--enqueue", "--wait", "--wait-timeout", "60",
        "--state-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert summary["statuses"] == {"ok": 2}
    for upload_id in upload_ids:
        assert metadata_of(s3, service, upload_id)["processing_status"] == "finished"
    wait_stored(redis_client, upload_ids)


def test_jobs_file_with_a_bad_line_runs_nothing(s3, redis_client, tmp_path):
    jobs = Path(tmp_path / "jobs.jsonl")
    jobs.write_text(json.dumps({"service_id": str(uuid.uuid4()), "upload_id": "x"}) + "\n")
    result = invoke("backfill", "csv", "--jobs", str(jobs), "--state-dir", str(tmp_path))
    assert result.exit_code == 2 and "line 1:" in result.output


def test_option_mistakes(tmp_path):
    sid = str(uuid.uuid4())
    both = invoke("backfill", "csv", "--service-id", sid, "--prefix", "service-", "--dry-run")
    assert both.exit_code == 2
    bad_id = invoke("backfill", "csv", "--service-id", "nope", "--dry-run")
    assert bad_id.exit_code == 2 and "must be a UUID" in bad_id.output
    no_enqueue = invoke("backfill", "csv", "--service-id", sid, "--wait")
    assert no_enqueue.exit_code == 2 and "--wait needs --enqueue" in no_enqueue.output
