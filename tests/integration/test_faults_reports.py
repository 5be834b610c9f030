"""Report exports under S3 faults: with 10% of requests failing, every report is written once,
whole, tagged, with nothing left behind, and the task result is what a clean run returns.

The same report requests (new request ids) run through the real worker with the fault proxy
paused, then with faults on; results, report bytes, tags, metadata and the multipart uploads
left in the bucket are compared. Small parts (1 KiB floor in tests) make most reports
multipart, so faults land on CreateMultipartUpload, UploadPart and CompleteMultipartUpload.
"""

from __future__ import annotations

import logging
import uuid

import pytest

from storage.settings import get_settings
from tests.csv_fixtures import WEB_APP_METADATA, csv_text, sms_rows
from tests.faults import task_retries
from tests.reports_fixtures import SERVICE
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.usefixtures("report_plugins"),
]
logger = logging.getLogger(__name__)

REQUESTS = [
    *[("synthetic", {"rows": 1500 + 100 * i}) for i in range(4)],  # multipart, ~20 parts each
    *[("synthetic", {"rows": 5 + i}) for i in range(6)],  # one PutObject each
    ("dangerous", {}),
    ("uploads", {}),
    ("uploads", {"from": "2000-01-01T00:00:00"}),
]


def _seed_uploads(s3) -> None:
    bucket = get_settings().bucket("csv-upload")
    for i in range(5):
        s3.put_object(
            Bucket=bucket,
            Key=f"service-{SERVICE}/{uuid.UUID(int=i + 1)}.csv",
            Body=csv_text(["phone number", "name"], sms_rows(3 + i)).encode(),
            Metadata={**WEB_APP_METADATA, "notification_count": str(3 + i)},
            ServerSideEncryption="AES256",
        )


def _run_all(s3) -> list[dict]:
    bucket = get_settings().bucket("report-downloads")
    sent = []
    for kind, params in REQUESTS:
        request_id = str(uuid.uuid4())
        kwargs = {
            "report_request_id": request_id,
            "service_id": SERVICE,
            "kind": kind,
            "params": params,
        }
        sent.append(
            (request_id, app.send_task(queues.REPORTS_GENERATE, kwargs=kwargs, queue="reports"))
        )
    outcomes = []
    for request_id, result in sent:
        value = result.get(timeout=120)
        outcome = {
            "result": {
                k: v for k, v in value.items() if k not in ("report_request_id", "key", "bucket")
            }
        }
        key = value.get("key")
        if key:
            assert request_id in key
            obj = s3.get_object(Bucket=bucket, Key=key)
            tags = s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            outcome["body"] = obj["Body"].read()
            outcome["tags"] = {t["Key"]: t["Value"] for t in tags}
            outcome["metadata"] = {
                k: v
                for k, v in obj["Metadata"].items()
                if k not in ("generated_at", "report_request_id", "run_token")
            }
            outcome["sse"] = obj.get("ServerSideEncryption")
        outcomes.append(outcome)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert uploads == [], "multipart uploads left behind"
    return outcomes


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from worker.runtime import base

    monkeypatch.setattr(base, "backoff_seconds", lambda retries: 0.1)


def _compare(clean: list[dict], faulted: list[dict]) -> None:
    for (kind, params), want, got in zip(REQUESTS, clean, faulted, strict=True):
        assert got == want, (kind, params)


def test_reports_under_faults_are_written_as_in_a_clean_run(
    s3_faults, s3, celery_worker, redis_client
):
    _seed_uploads(s3)
    with s3_faults.paused():
        clean = _run_all(s3)
    assert s3_faults.faults == 0
    assert all(o["result"]["status"] == "ok" for o in clean)
    assert clean[0]["result"]["rows"] == 1500
    s3_faults.reset_counters()

    with task_retries() as retried:
        faulted = _run_all(s3)
    logger.warning(
        "reports under faults: %s; task retries %s; %s",
        s3_faults.summary(),
        dict(retried),
        s3_faults.stats(),
    )
    _compare(clean, faulted)
    assert set(s3_faults.faults_by_kind()) == {"slowdown", "internal", "drop_before", "drop_after"}
    assert s3_faults.stats()["UploadPart"]["faults"]
    assert s3_faults.unencrypted_writes == []


@pytest.mark.parametrize("operation", ["CompleteMultipartUpload", "PutObject"])
def test_a_report_whose_completion_answer_is_lost_is_still_ok(
    s3_faults, s3, celery_worker, redis_client, operation
):
    """The completion happened but the worker never heard: botocore retries it, and the
    conditional retry (If-None-Match) is refused by the report the first attempt wrote. The
    run must still see the report as its own: same result as a clean run."""
    s3_faults.rate = 0
    rows = 1500 if operation == "CompleteMultipartUpload" else 5
    request_id = str(uuid.uuid4())
    kwargs = {"report_request_id": request_id, "service_id": SERVICE, "kind": "synthetic"}
    kwargs["params"] = {"rows": rows}
    clean = app.send_task(queues.REPORTS_GENERATE, kwargs=kwargs, queue="reports").get(60)
    assert clean["status"] == "ok"

    s3_faults.force(operation, "drop_after")
    kwargs["report_request_id"] = request_id2 = str(uuid.uuid4())
    value = app.send_task(queues.REPORTS_GENERATE, kwargs=kwargs, queue="reports").get(60)
    assert s3_faults.stats()[operation]["faults"] == {"drop_after": 1}
    bucket = get_settings().bucket("report-downloads")
    body = s3.get_object(Bucket=bucket, Key=value["key"])["Body"].read()
    assert body.count(b"\n") == rows + 1  # the report is whole either way
    assert request_id2 in value["key"]
    assert {k: v for k, v in value.items() if k not in ("report_request_id", "key")} == {
        k: v for k, v in clean.items() if k not in ("report_request_id", "key")
    }
