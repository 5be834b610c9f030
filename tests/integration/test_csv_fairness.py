"""Per-service fairness through real parts: a prefork worker, the broker, the built-in sink."""

from __future__ import annotations

import time
import uuid

import pytest

from tasks.csv_batches import state as st
from tests.csv_fixtures import csv_text, job_kwargs, sms_rows, upload, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OTHER_SERVICE = "3f1a7c2e-9d4b-4e6f-8a1b-5c7d9e0f1a2b"
BURST_JOBS = 50
BURST_ROWS = 4_000


def test_one_services_burst_does_not_hold_up_another_services_job(prefork_worker, s3, redis_client):
    """Service A sends 50 jobs of 4,000 rows (each below the bulk threshold, so all on the
    normal lane), then service B one 10-row job: B's rows are stored within seconds, long
    before A's burst is through; every one of A's jobs still finishes, each row stored once,
    and the jobs moved to the bulk lane give their result through the task id they were sent
    with."""
    from worker.runtime.app import app

    tag = uuid.uuid4().hex[:8]
    job_queue, sink_queue = f"test-csv-{tag}", f"test-sink-{tag}"
    prefork_worker(
        concurrency=2,
        queues=f"{job_queue},{job_queue}-bulk,{sink_queue},{sink_queue}-bulk",
        NOTIFY_ROW_SINK_QUEUE=sink_queue,
    )
    burst_csv = csv_text(["phone number", "name"], sms_rows(BURST_ROWS))
    burst = [upload(s3, burst_csv) for _ in range(BURST_JOBS)]
    small = upload(s3, csv_text(["phone number", "name"], sms_rows(10)), service_id=OTHER_SERVICE)
    # A warm-up job, so the measured time is not the pool children's first S3 client.
    warm = upload(s3, csv_text(["phone number", "name"], sms_rows(10)), service_id=OTHER_SERVICE)
    app.send_task(
        "notify.csv.process_batch",
        kwargs=job_kwargs(warm, service_id=OTHER_SERVICE),
        queue=job_queue,
    ).get(timeout=60)

    results = [
        app.send_task("notify.csv.process_batch", kwargs=job_kwargs(u), queue=job_queue)
        for u in burst
    ]
    started = time.monotonic()
    app.send_task(
        "notify.csv.process_batch",
        kwargs=job_kwargs(small, service_id=OTHER_SERVICE),
        queue=job_queue,
    )
    wait_for(lambda: (st.read_progress(small) or {}).get("stored") == 10, timeout=60)
    waited = time.monotonic() - started
    stored_burst = sum((st.read_progress(u) or {}).get("stored", 0) for u in burst)
    print(f"B's 10 rows stored {waited:.2f} s after it was sent; A's rows stored: {stored_burst:,}")
    assert waited < 20, waited  # 3.8-5.0 s measured at load 6-9; without fairness ~56 s
    assert stored_burst < BURST_JOBS * BURST_ROWS, "A's burst was through: nothing was proven"

    # Everything of A's still happens, once.
    for result in results:
        outcome = result.get(timeout=180)
        assert outcome["status"] == "ok" and outcome["rows_dispatched"] == BURST_ROWS, outcome
    wait_for(
        lambda: all(st.read_progress(u)["stored"] == BURST_ROWS for u in burst),
        timeout=180,
        interval=0.5,
    )
    lanes = [st.read_job(u)["queue"] for u in burst]
    assert lanes.count(f"{job_queue}-bulk") >= BURST_JOBS - 10, lanes
    assert set(lanes) == {job_queue, f"{job_queue}-bulk"}
    assert redis_client.hlen("notify:deadletter") == 0
