"""NOTIFY_S3_SSE=aws:kms: every write of every workflow names the KMS key and S3 Bucket Keys —
PutObject, CopyObject (letter moves), the copy onto itself that rewrites a CSV's metadata,
multipart uploads (reports) and multipart copies, cleanup's audit logs. moto's server over HTTP
records the headers; the ``s3`` fixture's teardown audit checks that every object left in every
bucket carries aws:kms with this key."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from storage.keys import csv_upload_key
from storage.objects import head, put_bytes
from tests.cleanup_fixtures import age, bucket, new_id
from tests.csv_fixtures import SERVICE_ID, WEB_APP_METADATA, job_kwargs, wait_for
from tests.letters_fixtures import DEST_KEY, letter_metadata, pdf_body
from worker.runtime import queues

pytestmark = pytest.mark.integration

KMS_KEY = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"


@pytest.fixture
def kms() -> Iterator[str]:
    """SSE-KMS for this test (set before the ``s3`` fixture reads the settings)."""
    from storage.settings import reload_settings

    os.environ.update(NOTIFY_S3_SSE="aws:kms", NOTIFY_S3_KMS_KEY_ID=KMS_KEY)
    reload_settings()
    try:
        yield KMS_KEY
    finally:
        os.environ.pop("NOTIFY_S3_SSE", None)
        os.environ.pop("NOTIFY_S3_KMS_KEY_ID", None)
        reload_settings()


def send(name: str, kwargs: dict):
    from worker.runtime.app import app

    return app.send_task(name, kwargs=kwargs, queue=queues.TASK_QUEUES[name])


def assert_kms(bucket_name: str, key: str, *, bucket_key: bool = True) -> None:
    info = head(bucket_name, key)
    assert info.server_side_encryption == "aws:kms", key
    from storage.client import get_client

    raw = get_client().head_object(Bucket=bucket_name, Key=key)
    assert raw["SSEKMSKeyId"] == KMS_KEY
    if bucket_key:  # moto reports the Bucket Key flag for PutObject and CopyObject
        assert raw.get("BucketKeyEnabled") is True


def test_every_workflow_writes_with_the_kms_key(kms, celery_worker, s3, redis_client):
    from tasks.csv_batches import state as st

    # CSV job: its outcome is recorded by copying the upload onto itself with new metadata
    upload_id = new_id()
    key = csv_upload_key(SERVICE_ID, upload_id)
    body = b"phone number,name\r\n07700900123,Ann\r\n07700900124,Bob\r\n"
    put_bytes(bucket("csv-upload"), key, body, metadata=WEB_APP_METADATA)
    assert send(queues.CSV_PROCESS_BATCH, job_kwargs(upload_id)).get(timeout=60)["status"] == "ok"
    wait_for(lambda: (st.read_progress(upload_id) or {}).get("status") == "finished", timeout=60)
    wait_for(lambda: head(bucket("csv-upload"), key).metadata.get("processing_status"))
    assert_kms(bucket("csv-upload"), key)

    # letter move: CopyObject into letters-pdf
    service_id, letter_id = new_id(), new_id()
    transient = f"service-{service_id}/{letter_id}.pdf"
    put_bytes(
        bucket("transient-letters"),
        transient,
        pdf_body(),
        metadata=letter_metadata("valid"),
        content_type="application/pdf",
    )
    moved = send(
        queues.LETTERS_MOVE_TRANSIENT,
        {
            "service_id": service_id,
            "upload_id": letter_id,
            "reference": "ABC123",
            "postage": "second",
            "created_at": "2024-07-15T10:00:00Z",
        },
    ).get(timeout=60)
    assert moved["status"] == "ok", moved
    assert_kms(bucket("letters-pdf"), DEST_KEY)

    # report through the worker
    report = send(
        queues.REPORTS_GENERATE,
        {
            "service_id": SERVICE_ID,
            "kind": "storage-usage",
            "report_request_id": new_id(),
            "params": {},
        },
    ).get(timeout=60)
    assert report["status"] == "ok", report
    assert_kms(bucket("report-downloads"), report["key"])

    # cleanup: the audit log of a deleting run
    old = f"service-{service_id}/{new_id()}.pdf"
    put_bytes(bucket("transient-letters"), old, b"%PDF old")
    age("transient-letters", old, 9)
    swept = send(queues.CLEANUP_SWEEP, {"bucket": "transient-letters", "dry_run": False}).get(
        timeout=60
    )
    assert swept["deleted"] == 1, swept
    (audit_log,) = swept["audit_logs"]
    assert_kms(bucket("report-downloads"), audit_log)


def test_multipart_uploads_and_copies_name_the_key(kms, s3):
    from storage.copies import copy_object
    from storage.upload import MultipartWriter

    reports = bucket("report-downloads")
    with MultipartWriter(reports, "big_report/a.csv", part_size=1024) as writer:
        writer.write(b"x" * 3000)
    assert writer.result is not None and writer.result.parts == 3
    assert_kms(reports, "big_report/a.csv", bucket_key=False)
    copy_object(
        head(reports, "big_report/a.csv"),
        reports,
        "big_report/b.csv",
        multipart_threshold=1000,
        part_size=1024,
    )
    assert_kms(reports, "big_report/b.csv", bucket_key=False)


def test_the_audit_catches_an_aes256_object_when_kms_is_configured(kms, s3, request):
    from tests.integration.test_security import _sse_audit

    audit = _sse_audit(request)
    name = bucket("csv-upload")
    s3.put_object(Bucket=name, Key="plain-aes", Body=b"x", ServerSideEncryption="AES256")
    try:
        with pytest.raises(AssertionError, match=r"plain-aes.*aws:kms"):
            audit(s3)
    finally:
        s3.delete_object(Bucket=name, Key="plain-aes")
