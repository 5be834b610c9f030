"""A report's worker process is SIGKILLed mid-upload; the redelivered task finishes the report.

Real prefork worker (acks late, reject on worker lost): the message comes back, the second run
finds no object and writes the whole report once.
"""

from __future__ import annotations

import os
import signal
import uuid

import pytest

from storage.objects import get_tags
from tests.reliability_fixtures import wait_for
from tests.reports_fixtures import (
    SERVICE,
    pending_uploads,
    read_report,
    report_bucket,
)
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.usefixtures("report_plugins")]


def test_report_survives_its_worker_being_killed_mid_upload(prefork_worker, s3, redis_client):
    # A queue only this worker consumes: the session's thread worker takes every standard queue.
    queue = f"reports-kill-{uuid.uuid4().hex[:8]}"
    worker = prefork_worker(concurrency=1, queues=queue)
    request = str(uuid.uuid4())
    key = f"slow_report/{request}.csv"
    kwargs = {
        "report_request_id": request,
        "service_id": SERVICE,
        "kind": "slow",
        "params": {"rows": 300, "delay": 0.015},
    }
    result = app.send_task(queues.REPORTS_GENERATE, kwargs=kwargs, queue=queue)
    wait_for(lambda: key in pending_uploads(), 30, 0.05, "the first parts to be uploaded")
    children = worker.children()
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)

    value = result.get(timeout=60)
    assert value["status"] == "ok", (value, worker.log()[-3000:])
    assert value["rows"] == 300
    records = read_report(key)
    assert len(records) == 301
    assert [int(r[0]) for r in records[1:]] == list(range(1, 301))
    assert get_tags(report_bucket(), key)["row-count"] == "300"
    # The dead run's upload: moto dates every upload 2010, so the rerun aborts it here; on S3
    # it is younger than the time limit and stays for the cleanup's 1-day abort (that path is
    # tested against real start times in test_crash_reports.py). Never more than that one.
    assert len(pending_uploads()) <= 1
    assert "WorkerLostError" in worker.log() or "SIGKILL" in worker.log()
