"""``notify.cleanup.sweep`` through the real broker and worker, on moto's server over HTTP:
the dry-run default, execute, protected purposes, the request floor, and CSV jobs scheduled
through the CSV workflow's own task."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from storage.client import make_client
from tasks.cleanup.sweep import sweep
from tests.cleanup_fixtures import (
    SERVICE,
    audit_lines,
    csv_key,
    keys_in,
    new_id,
    put,
    put_aged,
    seed,
)
from worker.client import NotifyClient, send_by_name
from worker.runtime import queues

pytestmark = pytest.mark.integration


def letter_key() -> str:
    return f"service-{SERVICE}/{new_id()}.pdf"


def test_task_is_a_dry_run_by_default(celery_worker, s3, redis_client):
    old = put_aged("transient-letters", letter_key(), 10)
    result = send_by_name(queues.CLEANUP_SWEEP, {"bucket": "transient-letters"}).get(timeout=30)
    assert result["status"] == "ok" and result["dry_run"] is True
    assert result["matched"] == 1 and result["deleted"] == 0
    assert result["matched_by_reason"] == {"expired": 1}
    assert keys_in("transient-letters") == {old}


def test_task_executes_when_told(celery_worker, s3, redis_client):
    old = put_aged("transient-letters", letter_key(), 10)
    young = put_aged("transient-letters", letter_key(), 1)
    sent = NotifyClient().sweep_bucket("transient-letters", dry_run=False)
    result = sent.get(timeout=30)
    assert result["status"] == "ok" and result["deleted"] == 1
    assert keys_in("transient-letters") == {young}
    assert [line["key"] for line in audit_lines()] == [old]
    assert result["audit_logs"] == sorted(keys_in("report-downloads", "cleanup-audit/"))


def test_task_refuses_protected_purposes(celery_worker, s3, redis_client):
    put_aged("mou", "crown.pdf", 5000)
    kwargs = {"bucket": "mou", "dry_run": False, "max_deletions": 10**6, "as_of": "2999-01-01"}
    result = send_by_name(queues.CLEANUP_SWEEP, kwargs).get(timeout=30)
    assert result["status"] == "skipped" and "protected" in result["reason"]
    assert keys_in("mou") == {"crown.pdf"}


@pytest.mark.parametrize(
    ("kwargs", "code"),
    [
        ({"bucket": "nope"}, "unknown_bucket"),
        ({"bucket": "logo", "max_deletions": -1}, "invalid_max_deletions"),
        ({"bucket": "logo", "as_of": "yesterday"}, "invalid_timestamp"),
    ],
)
def test_task_fails_bad_input_without_retrying(celery_worker, s3, redis_client, kwargs, code):
    result = send_by_name(queues.CLEANUP_SWEEP, kwargs).get(timeout=30)
    assert result["status"] == "failed" and result["error_code"] == code
    assert result["error_message"]


def test_task_reports_the_guard(celery_worker, s3, redis_client):
    for _ in range(3):
        put_aged("transient-letters", letter_key(), 10)
    kwargs = {"bucket": "transient-letters", "dry_run": False, "max_deletions": 2}
    result = send_by_name(queues.CLEANUP_SWEEP, kwargs).get(timeout=30)
    assert result["status"] == "failed" and result["error_code"] == "max_deletions_reached"
    assert result["stopped_early"] is True and result["deleted"] == 2


def test_requests_stay_at_the_floor(s3):
    """Per 1,000 deleted keys: one list page, one audit PutObject, one DeleteObjects."""
    seed("transient-letters", (letter_key() for _ in range(2500)), days=30)
    client = make_client()
    sent: Counter[str] = Counter()
    client.meta.events.register(
        "before-send.s3", lambda event_name, **_: sent.update([event_name.rsplit(".", 1)[1]])
    )
    result = sweep("transient-letters", dry_run=False, client=client)
    assert result.deleted == 2500
    assert sent == {
        "ListMultipartUploads": 1,
        "GetBucketVersioning": 1,  # once per run that deletes: does a delete leave a marker?
        "ListObjectsV2": 3,
        "PutObject": 3,
        "DeleteObjects": 3,
    }
    assert sum(sent.values()) == 11  # 9 at the floor + the multipart listing + versioning


# --- CSV jobs scheduled through the CSV workflow ----------------------------------------------


def _schedule_csv_job(days_ahead: float) -> str:
    """Upload a CSV as the web app does and schedule its job through the public task."""
    upload_id = new_id()
    key = csv_key(SERVICE, upload_id)
    put(
        "csv-upload",
        key,
        b"phone number\n07700900001\n",
        metadata={
            "original_file_name": "people.csv",
            "notification_count": "1",
            "template_id": new_id(),
            "valid": "True",
        },
    )
    when = datetime.now(UTC) + timedelta(days=days_ahead)
    kwargs = {
        "service_id": SERVICE,
        "upload_id": upload_id,
        "template": {"id": new_id(), "type": "sms", "placeholders": []},
        "scheduled_for": when.isoformat(),
    }
    result = send_by_name(queues.CSV_PROCESS_BATCH, kwargs).get(timeout=30)
    assert result["status"] == "ok", result
    return key


def reconcile() -> dict:
    return send_by_name(queues.JOBS_RECONCILE, {}).get(timeout=60)


def test_cleanup_far_in_the_future_keeps_a_csv_scheduled_beyond_it(celery_worker, s3, redis_client):
    scheduled = _schedule_csv_job(days_ahead=3)
    orphan = put_aged("csv-upload", csv_key(), 10)  # never became a job
    assert reconcile()["status"] == "ok"  # Redis state known complete (the CSV sentinel)
    far = datetime.now(UTC) + timedelta(days=60)
    result = sweep("csv-upload", dry_run=False, as_of=far)
    assert keys_in("csv-upload") == {scheduled}
    assert result.kept_by_reason == {"job_pending": 1}
    assert result.policy_stats["head_requests"] == 0  # no extra request per object
    assert [line["key"] for line in audit_lines()] == [orphan]

    # Redis loses every notify: key; the object's metadata still protects the job.
    redis_client.delete(*redis_client.scan_iter("notify:*"))
    again = sweep("csv-upload", dry_run=False, as_of=far)
    assert keys_in("csv-upload") == {scheduled}
    assert again.kept_by_reason == {"job_scheduled": 1}
    assert again.policy_stats == {
        "head_requests": 1,
        "verify": "auto",
        "job_state_incomplete": True,
    }

    # The reconciler rebuilds the schedule from the metadata: back to Redis alone.
    assert reconcile()["status"] == "ok"
    third = sweep("csv-upload", dry_run=False, as_of=far)
    assert third.kept_by_reason == {"job_pending": 1}
    assert third.policy_stats["head_requests"] == 0
