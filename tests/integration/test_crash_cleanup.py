"""A cleanup sweep's whole worker (main process and pool) is SIGKILLed mid-sweep, as when the
machine dies; Redis hands the message to a new worker after the visibility timeout and the
rerun finishes the sweep. Nothing protected is touched, by either run.

The kill point is exact: the fault proxy holds the sweep's second DeleteObjects request (the
first batch is deleted and audited, the second batch audited but not deleted), the worker is
killed while it waits, and the held request is then dropped.

(The cleanup workflow's own kill test, tests/integration/test_cleanup_kill.py, kills the pool
process only, so the message comes back at once; this one covers the machine dying.)
"""

from __future__ import annotations

import time

import pytest

from tests.cleanup_fixtures import audit_lines, bucket, keys_in, seed
from tests.reliability_fixtures import private_queue, unacked_on
from worker.runtime import queues
from worker.runtime.app import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VISIBILITY = 10
WORKER_ENV = {
    "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY),
    "NOTIFY_TASK_TIME_LIMIT_SECONDS": str(VISIBILITY - 2),
}
EXPIRED = 1200  # two DeleteObjects batches
REPORTS = "report-downloads"


def _report(n: int) -> str:
    return f"uploads_report/00000000-0000-4000-8000-{n:012d}.csv"


def _protected() -> set[str]:
    """Objects that must survive, interleaved with the expired ones in listing order: reports
    from two days ago, and audit logs of earlier sweeps (kept 90 days)."""
    kept = seed(REPORTS, (_report(n) for n in range(3, EXPIRED, 60)), 2)
    kept += seed(REPORTS, (f"cleanup-audit/logo/2024-01-0{d}/run/00001.jsonl" for d in (1, 2)), 30)
    return set(kept)


def _fingerprints(s3, keys) -> dict[str, tuple]:
    found = {}
    for key in keys:
        head = s3.head_object(Bucket=bucket(REPORTS), Key=key)
        found[key] = (head["ETag"], head["LastModified"], head["Metadata"])
    return found


def test_sweep_killed_with_its_machine_is_finished_by_the_redelivery(
    s3, fault_proxy, rel_workers, redis_client
):
    fault_proxy.rate = 0
    protected = _protected()
    expired = set(seed(REPORTS, (_report(n) for n in range(EXPIRED) if n % 60 != 3), 10))
    before = _fingerprints(s3, protected)
    queue = private_queue("crash-cleanup")
    held = fault_proxy.hold("DeleteObjects", bucket(REPORTS), skip=1)
    first = rel_workers(queues=queue, s3_endpoint=fault_proxy.url, **WORKER_ENV)
    sent = app.send_task(
        queues.CLEANUP_SWEEP, kwargs={"bucket": REPORTS, "dry_run": False}, queue=queue
    )
    held.wait(90)  # batch 1 deleted; batch 2 audited, its delete in flight
    first.kill()
    killed_at = time.monotonic()
    held.release(forward=False)  # the delete never reached S3

    first_run_logs = keys_in(REPORTS, "cleanup-audit/report-downloads/")
    assert len(first_run_logs) == 2  # batch 1's and batch 2's
    before |= _fingerprints(s3, first_run_logs)
    left = keys_in(REPORTS)
    assert protected <= left
    remaining = len(expired & left)
    assert 0 < remaining < len(expired), remaining  # killed half-way
    assert unacked_on(redis_client, queue) == 1  # Redis still holds the delivery

    # A new machine, once the visibility timeout has passed, gets the message again.
    time.sleep(max(0.0, VISIBILITY + 0.5 - (time.monotonic() - killed_at)))
    second = rel_workers(queues=queue, s3_endpoint=fault_proxy.url, **WORKER_ENV)
    result = sent.get(timeout=90)
    assert result["status"] == "ok", (result, second.log()[-3000:])
    assert result["deleted"] == remaining  # what the first run did not get to
    # Left: the protected objects, the first run's audit logs and the rerun's own.
    logs = keys_in(REPORTS, "cleanup-audit/report-downloads/")
    assert first_run_logs < logs
    assert keys_in(REPORTS) == protected | logs
    # Not deleted, not even rewritten: the protected objects and the first run's audit logs.
    assert _fingerprints(s3, protected | first_run_logs) == before
    assert result["kept_by_reason"] == {"too_recent": len(protected) + len(first_run_logs)}
    audited = {line["key"] for line in audit_lines("cleanup-audit/report-downloads/")}
    assert audited == expired  # every deletion audited (batch 2 by both runs), nothing else
