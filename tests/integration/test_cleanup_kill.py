"""A sweep's worker process is SIGKILLed half-way; the redelivered task finishes the sweep.

Real prefork worker (acks late, reject on worker lost) on a queue of its own, so the session's
thread worker cannot take the message. A slow fake reference check keeps each batch of 1,000
keys busy for a moment, so the kill lands after the first batch's audit log is written and
before the last batch is deleted.
"""

from __future__ import annotations

import os
import signal

import pytest

from tests.cleanup_fixtures import SERVICE, audit_lines, keys_in, new_id, seed
from tests.reliability_fixtures import wait_for
from worker.runtime import queues

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUEUE = "cleanup-kill-test"


def test_sweep_killed_half_way_is_finished_by_the_redelivery(
    prefork_worker, celery_app, s3, redis_client
):
    worker = prefork_worker(
        concurrency=1,
        queues=QUEUE,
        NOTIFY_REFERENCE_CHECK="tests.plugins.reference_check:check",
        FAKE_REFERENCE_CHECK_DELAY="3",
    )
    keys = set(seed("email-attachments", (f"{SERVICE}/{new_id()}" for _ in range(3000)), 30))
    sent = celery_app.send_task(
        queues.CLEANUP_SWEEP,
        kwargs={"bucket": "email-attachments", "dry_run": False},
        queue=QUEUE,
    )
    wait_for(lambda: keys_in("report-downloads", "cleanup-audit/"), 60, 0.05, "the first audit log")

    # Kill once the first batch is really deleted (its audit log is written just before).
    def first_batch_deleted() -> bool:
        return len(keys_in("email-attachments")) <= 2000

    wait_for(first_batch_deleted, 60, 0.05, "the first batch's delete")
    children = worker.children()
    assert children, "no pool process to kill"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
    # The first run got no further than its second batch.
    assert len(keys_in("email-attachments")) >= 1000

    result = sent.get(timeout=90)
    assert result["status"] == "ok", (result, worker.log()[-3000:])
    assert 0 < result["deleted"] <= 2000  # the rerun finished what the first run left
    assert keys_in("email-attachments") == set()
    lines = audit_lines()
    assert {line["key"] for line in lines} == keys  # every deletion is audited
    assert {line["reason"] for line in lines} == {"unreferenced"}
    assert "WorkerLostError" in worker.log() or "SIGKILL" in worker.log()
