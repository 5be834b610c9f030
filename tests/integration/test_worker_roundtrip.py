"""A task goes through the real broker to a real worker and its JSON result comes back."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_reconcile_round_trip_through_thread_worker(celery_worker, s3, redis_client):
    from worker.client import send_by_name
    from worker.runtime import queues

    result = send_by_name(queues.JOBS_RECONCILE, {}).get(timeout=30)
    assert result["status"] == "ok"


def test_enqueue_wait_through_prefork_worker(prefork_worker, s3, redis_client):
    prefork_worker(concurrency=1)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "worker",
            "enqueue",
            "notify.jobs.reconcile",
            "{}",
            "--wait",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"] == "ok"
