"""CSV batches under S3 faults: 10% of requests fail (503 SlowDown, 500, a connection dropped
before or after moto did the work) and every job ends exactly as in a clean run.

The same set of jobs runs twice through the real worker, first with the fault proxy paused,
then with faults on; each job's task result, outcome metadata and sink contents are compared
(ids and times aside). The faulted run must really have met faults of every kind.
"""

from __future__ import annotations

import json
import logging

import pytest

from storage.keys import csv_upload_key
from storage.settings import get_settings
from tasks.csv_batches import state as st
from tests.csv_fixtures import SERVICE_ID, WEB_APP_METADATA, csv_text, job_kwargs, sms_rows, upload
from tests.faults import task_retries
from tests.reliability_fixtures import wait_for
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]
logger = logging.getLogger(__name__)

EMAILS = ["a@example.com", "not-an-email", "b.c@example.org", "", "x@y"]


def _jobs() -> list[tuple[str, str, dict]]:
    """(name, CSV text, job kwargs overrides): valid, row errors and file-level errors."""
    jobs = [
        ("sms-2300", csv_text(["phone number", "name"], sms_rows(2300, bad_every=40)), {}),
        (
            "email",
            csv_text(
                ["email address", "name"],
                [[EMAILS[i % len(EMAILS)], f"P{i}"] for i in range(120)],
            ),
            {"template_type": "email"},
        ),
        (
            "letter",
            csv_text(
                ["address line 1", "address line 2", "postcode", "name"],
                [
                    ["Ms A", "1 High St", "SW1A 1AA" if i % 7 else "nowhere", f"L{i}"]
                    for i in range(60)
                ],
            ),
            {"template_type": "letter"},
        ),
        ("header-only", "phone number,name\r\n", {}),
        ("no-recipient-column", csv_text(["name"], [["x"]]), {}),
        ("missing-placeholder", csv_text(["phone number"], [["07700900001"]]), {}),
    ]
    # Many small jobs: every job makes ~6 requests, so faults land in every step of the job.
    jobs += [
        (f"sms-{n}", csv_text(["phone number", "name"], sms_rows(30 + n, bad_every=9, seed=n)), {})
        for n in range(18)
    ]
    return jobs


def _run_all(s3, redis_client) -> dict[str, dict]:
    """Upload and run every job through the worker; returns the normalised outcomes."""
    bucket = get_settings().bucket("csv-upload")
    sent = []
    for name, text, overrides in _jobs():
        upload_id = upload(s3, text)
        kwargs = job_kwargs(upload_id, **overrides)
        sent.append((name, upload_id, app.send_task(queues.CSV_PROCESS_BATCH, kwargs=kwargs)))
    outcomes = {}
    for name, upload_id, result in sent:
        value = result.get(timeout=180)
        if value.get("rows_dispatched"):
            wait_for(
                lambda u=upload_id, n=value["rows_dispatched"]: st.read_progress(u)["stored"] >= n,
                60,
                what=f"{name}: rows stored",
            )
        head = s3.head_object(Bucket=bucket, Key=csv_upload_key(SERVICE_ID, upload_id))
        stored = redis_client.hgetall(st.notifications_key(upload_id))
        rows = {}
        for raw in stored.values():
            row = json.loads(raw)
            rows[row["row_number"]] = (row["recipient"], row["personalisation"])
        outcomes[name] = {
            "result": {
                k: v
                for k, v in value.items()
                if k not in ("upload_id", "finished_at", "error_message")
            },
            "has_error_message": bool(value.get("error_message")) == (value["status"] == "failed"),
            "metadata": {
                k: v
                for k, v in head["Metadata"].items()
                if k not in ("processing_finished_at", "uploaded_at", "processing_source_etag")
            },
            "uploaded_at": "uploaded_at" in head["Metadata"],
            "sse": head.get("ServerSideEncryption"),
            "rows": rows,
            "rows_stored_once": int(st.read_progress(upload_id)["stored"] or 0) == len(rows),
        }
    return outcomes


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from worker.runtime import base

    monkeypatch.setattr(base, "backoff_seconds", lambda retries: 0.1)


def test_csv_jobs_under_faults_end_as_in_a_clean_run(s3_faults, s3, celery_worker, redis_client):
    with s3_faults.paused():
        clean = _run_all(s3, redis_client)
    assert s3_faults.faults == 0
    assert clean["sms-2300"]["result"]["rows_dispatched"] == 2300 - 2300 // 40
    assert clean["header-only"]["result"]["error_code"] == "no_rows"
    s3_faults.reset_counters()

    with task_retries() as retried:
        faulted = _run_all(s3, redis_client)
    logger.warning(
        "CSV under faults: %s; task retries %s; %s",
        s3_faults.summary(),
        dict(retried),
        s3_faults.stats(),
    )
    for name in clean:
        assert faulted[name] == clean[name], name
    kinds = s3_faults.faults_by_kind()
    assert set(kinds) == {"slowdown", "internal", "drop_before", "drop_after"}, kinds
    assert s3_faults.unencrypted_writes == []
    for name, outcome in faulted.items():
        assert outcome["sse"] == "AES256", name
        assert outcome["uploaded_at"] and outcome["has_error_message"], name
        assert outcome["rows_stored_once"], name
        for key, value in WEB_APP_METADATA.items():
            assert outcome["metadata"][key] == value, (name, key)


def test_a_csv_stream_cut_mid_dispatch_resumes_and_stores_each_row_once(
    s3_faults, s3, celery_worker, redis_client
):
    """The dispatch pass's GetObject is cut half-way (headers and half the body sent, then the
    connection closed): botocore cannot retry a body read, so the task retries, and the job
    resumes after its checkpoint. Every valid row is stored, once; the outcome is a clean one."""
    s3_faults.rate = 0
    rows, bad_every = 30_000, 40
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(rows, bad_every=bad_every)))
    s3_faults.force("GetObject", "truncate", skip=1)  # the scan reads whole; dispatch is cut
    with task_retries() as retried:
        result = app.send_task(queues.CSV_PROCESS_BATCH, kwargs=job_kwargs(upload_id)).get(120)
    valid = rows - rows // bad_every
    assert result["status"] == "ok", result
    assert (result["rows_total"], result["rows_dispatched"]) == (rows, valid)
    assert dict(retried) == {queues.CSV_PROCESS_BATCH: 1}
    assert s3_faults.stats()["GetObject"]["faults"] == {"truncate": 1}
    wait_for(lambda: st.read_progress(upload_id)["stored"] >= valid, 60, what="rows stored")
    stored = redis_client.hgetall(st.notifications_key(upload_id))
    assert len(stored) == valid == st.read_progress(upload_id)["stored"]
    assert st.read_job(upload_id)["runs"] == "2"  # it did resume, not start again
