"""A report's whole worker (main process and pool) is SIGKILLed mid-upload, as when the machine
dies. A SIGKILL cannot run the abort, so the multipart upload is left dangling; what is
promised (tasks/reports/generate.py, docs/reports.md, docs/cleanup.md):

* no partial object is ever visible at the report's key;
* the cleanup sweep leaves a young upload alone (it may be a live run) and aborts one older
  than a day, judged by the real clock, never by ``as_of``;
* the redelivered task (a new machine, after the visibility timeout) aborts the dead run's
  upload, since it is older than the task time limit, and writes the whole report once.

The kill point is exact: the fault proxy holds the third UploadPart. The proxy also lists each
multipart upload with its real start time (moto says 2010-11-10 for every upload, which would
make every live upload look abandoned and these tests pass for the wrong reason).

(The reports workflow's own kill test, tests/integration/test_reports_kill.py, kills the pool
process only, so the message comes back at once; this one covers the machine dying.)
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.settings import get_settings
from tasks.cleanup.sweep import sweep
from tests.reliability_fixtures import private_queue, unacked_on
from tests.reports_fixtures import SERVICE, read_report
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("report_plugins"),
]

VISIBILITY = 10
WORKER_ENV = {
    "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
    "NOTIFY_TASK_TIME_LIMIT_SECONDS": str(VISIBILITY - 2),
}
ROWS = 1500  # ~80 parts of 1 KiB


def _uploads(s3) -> dict[str, str]:
    """Pending multipart uploads of the report bucket (upload id -> key), straight from moto."""
    listed = s3.list_multipart_uploads(Bucket=get_settings().bucket("report-downloads"))
    return {u["UploadId"]: u["Key"] for u in listed.get("Uploads", [])}


def test_report_killed_with_its_machine_leaves_no_partial_object_and_a_rerun_completes(
    s3, s3_faults, rel_workers, redis_client
):
    s3_faults.rate = 0
    bucket = get_settings().bucket("report-downloads")
    request_id = str(uuid.uuid4())
    key = f"synthetic_report/{request_id}.csv"
    queue = private_queue("crash-reports")
    held = s3_faults.hold("UploadPart", key, skip=2)
    first = rel_workers(queues=queue, s3_endpoint=s3_faults.url, **WORKER_ENV)
    kwargs = {"report_request_id": request_id, "service_id": SERVICE, "kind": "synthetic"}
    sent = app.send_task(
        queues.REPORTS_GENERATE, kwargs={**kwargs, "params": {"rows": ROWS}}, queue=queue
    )
    held.wait(60)
    first.kill()
    killed_at = time.monotonic()
    held.release(forward=False)

    # Dead: nothing at the key, one dangling upload, the delivery still held by Redis.
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix=key)
    [dead] = [u for u, k in _uploads(s3).items() if k == key]
    assert unacked_on(redis_client, queue) == 1

    # Cleanup: the dead upload is minutes old, so it stays, whatever as_of says; an orphan
    # from two days ago (a run that was never retried) is aborted.
    orphan = s3.create_multipart_upload(
        Bucket=bucket, Key=f"uploads_report/{uuid.uuid4()}.csv", ServerSideEncryption="AES256"
    )["UploadId"]
    s3_faults.age_upload(orphan, datetime.now(UTC) - timedelta(days=2))
    far_future = datetime.now(UTC) + timedelta(days=30)
    result = sweep("report-downloads", dry_run=False, as_of=far_future)
    assert (result.multipart_stale, result.multipart_aborted) == (1, 1)
    assert result.deleted == 0
    assert set(_uploads(s3)) == {dead}

    # A new machine gets the message after the visibility timeout; the dead run's upload is
    # older than the task time limit by then, so the rerun aborts it and writes the report.
    time.sleep(max(0.0, VISIBILITY + 0.5 - (time.monotonic() - killed_at)))
    second = rel_workers(queues=queue, s3_endpoint=s3_faults.url, **WORKER_ENV)
    value = sent.get(timeout=90)
    assert value["status"] == "ok", (value, second.log()[-3000:])
    assert value["rows"] == ROWS
    records = read_report(key)
    assert [int(r[0]) for r in records[1:]] == list(range(1, ROWS + 1))
    tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert {"Key": "row-count", "Value": str(ROWS)} in tags
    assert _uploads(s3) == {}
    assert "aborted 1 stale multipart upload" in second.log()
