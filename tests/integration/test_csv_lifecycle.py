"""Job lifecycle through real parts: scheduled jobs, cancel, fairness, cheap progress,
retention that respects pending jobs."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from storage.keys import isoformat
from tasks.csv_batches import state as st
from tests.csv_fixtures import (
    SERVICE_ID,
    TEMPLATE_ID,
    csv_text,
    head,
    job_kwargs,
    sms_rows,
    upload,
    wait_for,
)

pytestmark = pytest.mark.integration


def soon(seconds: float) -> str:
    return isoformat(datetime.now(UTC) + timedelta(seconds=seconds))


def private_queues() -> tuple[str, str]:
    """A job queue and a sink queue only this test's prefork worker consumes (the session's
    thread worker consumes every standard queue)."""
    tag = uuid.uuid4().hex[:8]
    return f"test-csv-{tag}", f"test-sink-{tag}"


def send(name: str, kwargs: dict, queue: str | None = None):
    from worker.client import send_by_name
    from worker.runtime.app import app

    if queue is None:
        return send_by_name(name, kwargs)
    return app.send_task(name, kwargs=kwargs, queue=queue)


def wipe_notify_state(redis_client) -> None:
    """Redis restarted without persistence: every ``notify:`` key is gone."""
    names = list(redis_client.scan_iter("notify:*"))
    if names:
        redis_client.delete(*names)


# --- scheduled jobs -------------------------------------------------------------------------------


def test_scheduled_job_waits_for_its_time_then_runs_once(celery_worker, s3, redis_client):
    upload_id = upload(s3, "phone number,name\n07700900123,Ann\n07700900124,Bob\n")
    due = soon(3)
    scheduled = send("notify.csv.process_batch", job_kwargs(upload_id, scheduled_for=due))
    assert scheduled.get(timeout=30)["job_status"] == "scheduled"
    assert head(s3, upload_id)["Metadata"]["scheduled_for"] == due
    early = send("notify.csv.release_due", {}).get(timeout=30)
    assert early["released"] == 0
    assert st.read_progress(upload_id)["status"] == "scheduled"
    assert redis_client.hlen(st.notifications_key(upload_id)) == 0

    wait_for(lambda: datetime.now(UTC).timestamp() > datetime.fromisoformat(due).timestamp())
    assert send("notify.csv.release_due", {}).get(timeout=30)["released"] == 1
    wait_for(lambda: st.read_progress(upload_id)["stored"] == 2, timeout=30)
    assert send("notify.csv.release_due", {}).get(timeout=30)["released"] == 0
    progress = st.read_progress(upload_id)
    assert progress["status"] == "finished" and progress["dispatched"] == 2
    assert st.read_job(upload_id)["runs"] == "1"
    assert head(s3, upload_id)["Metadata"]["processing_status"] == "finished"


def test_a_cancelled_job_never_runs(celery_worker, s3, redis_client):
    upload_id = upload(s3, "phone number,name\n07700900123,Ann\n")
    send("notify.csv.process_batch", job_kwargs(upload_id, scheduled_for=soon(1))).get(timeout=30)
    cancelled = send("notify.csv.cancel", {"service_id": SERVICE_ID, "upload_id": upload_id})
    assert cancelled.get(timeout=30)["job_status"] == "cancelled"
    time.sleep(1.2)
    assert send("notify.csv.release_due", {}).get(timeout=30)["released"] == 0
    assert head(s3, upload_id)["Metadata"]["processing_status"] == "cancelled"
    assert redis_client.hlen(st.notifications_key(upload_id)) == 0
    assert st.read_progress(upload_id)["status"] == "cancelled"


def test_a_lost_redis_schedule_is_rebuilt_and_runs_once(celery_worker, s3, redis_client):
    upload_id = upload(s3, "phone number,name\n07700900123,Ann\n")
    due = soon(2)
    send("notify.csv.process_batch", job_kwargs(upload_id, scheduled_for=due)).get(timeout=30)
    wipe_notify_state(redis_client)
    reconciled = send("notify.jobs.reconcile", {}).get(timeout=60)
    assert reconciled["status"] == "ok" and reconciled["rescheduled"] == 1
    assert st.read_progress(upload_id)["status"] == "scheduled"
    wait_for(lambda: datetime.now(UTC) > datetime.fromisoformat(due), timeout=10)
    assert send("notify.csv.release_due", {}).get(timeout=30)["released"] == 1
    wait_for(lambda: (st.read_progress(upload_id) or {}).get("stored") == 1, timeout=30)
    assert send("notify.jobs.reconcile", {}).get(timeout=60)["rescheduled"] == 0
    assert send("notify.csv.release_due", {}).get(timeout=30)["released"] == 0
    assert st.read_job(upload_id)["runs"] == "1"


@pytest.mark.slow
def test_a_schedule_survives_a_worker_restart(prefork_worker, s3, redis_client):
    job_queue, sink_queue = private_queues()
    sinks = f"{sink_queue},{sink_queue}-bulk"
    env = {"NOTIFY_ROW_SINK_QUEUE": sink_queue}
    first = prefork_worker(concurrency=1, queues=f"{job_queue},{sinks}", **env)
    upload_id = upload(s3, "phone number,name\n07700900123,Ann\n")
    due = soon(2)
    result = send(
        "notify.csv.process_batch", job_kwargs(upload_id, scheduled_for=due), queue=job_queue
    ).get(timeout=60)
    assert result["job_status"] == "scheduled"
    first.stop()  # nothing about the schedule lives in the worker
    prefork_worker(concurrency=1, queues=f"{job_queue},{sinks}", **env)
    wait_for(lambda: datetime.now(UTC) > datetime.fromisoformat(due), timeout=10)
    from tasks.csv_batches import scheduling

    assert scheduling.release_due()["released"] == 1  # (beat's job; here called directly)
    wait_for(lambda: st.read_progress(upload_id)["stored"] == 1, timeout=60)
    assert scheduling.release_due()["released"] == 0
    assert st.read_job(upload_id)["queue"] == job_queue
    assert st.read_job(upload_id)["runs"] == "1"


# --- fairness -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_small_job_is_not_queued_behind_a_big_one(prefork_worker, s3, redis_client):
    """A 100,000-row job (bulk above a threshold of 1,000 rows, for speed) is in flight when a
    10-row job arrives: the small job's rows are all stored within seconds, while the big
    job's are still being stored. (bench/csv_batches.py --fairness runs it with 1M rows.)"""
    job_queue, sink_queue = private_queues()
    queues = f"{job_queue},{job_queue}-bulk,{sink_queue},{sink_queue}-bulk"
    prefork_worker(
        concurrency=2,
        queues=queues,
        NOTIFY_ROW_SINK_QUEUE=sink_queue,
        NOTIFY_BULK_THRESHOLD_ROWS="1000",
    )
    big_rows = 100_000
    big = upload(s3, csv_text(["phone number", "name"], sms_rows(big_rows)))
    small = upload(s3, csv_text(["phone number", "name"], sms_rows(10)))
    # The client knows the big job's size and sends it to the bulk job queue.
    send("notify.csv.process_batch", job_kwargs(big), queue=f"{job_queue}-bulk")
    wait_for(lambda: (st.read_progress(big) or {}).get("dispatched", 0) >= 5_000, timeout=60)
    started = time.monotonic()
    send("notify.csv.process_batch", job_kwargs(small), queue=job_queue)
    wait_for(lambda: (st.read_progress(small) or {}).get("stored") == 10, timeout=30)
    waited = time.monotonic() - started
    big_progress = st.read_progress(big)
    assert waited < 10, waited
    assert big_progress["stored"] < big_rows, "the big job was already done: nothing was proven"
    assert redis_client.llen(f"{sink_queue}-bulk") > 0 or big_progress["status"] == "running"
    # Let the big job finish so nothing is left behind for later tests.
    wait_for(lambda: st.read_progress(big)["stored"] == big_rows, timeout=240, interval=0.5)


# --- cheap progress -------------------------------------------------------------------------------


def test_progress_reads_touch_no_s3_object(celery_worker, s3, redis_client, monkeypatch):
    import json

    from click.testing import CliRunner

    from worker.cli import main
    from worker.client import NotifyClient

    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(1200, bad_every=100)))
    scheduled = upload(s3, "phone number,name\n07700900123,Ann\n")
    client = NotifyClient()
    client.process_csv(
        SERVICE_ID, upload_id, template_id=TEMPLATE_ID, template_type="sms", placeholders=["name"]
    ).get(timeout=60)
    client.process_csv(
        SERVICE_ID,
        scheduled,
        template_id=TEMPLATE_ID,
        template_type="sms",
        placeholders=["name"],
        scheduled_for=soon(3600),
    ).get(timeout=60)
    wait_for(lambda: st.read_progress(upload_id)["stored"] == 1188, timeout=60)

    def no_s3(*_, **__):
        raise AssertionError("a progress read called S3")

    import storage.client
    import storage.objects

    monkeypatch.setattr(storage.client, "get_client", no_s3)
    monkeypatch.setattr(storage.objects, "get_client", no_s3)
    progress = client.job_progress(upload_id)
    assert (progress["status"], progress["total"], progress["dispatched"]) == (
        "finished",
        1200,
        1188,
    )
    assert progress["invalid"] == 12 and progress["stored"] == 1188
    assert progress["started_at"] and progress["updated_at"] and progress["finished_at"]
    assert client.job_progress(str(uuid.uuid4())) is None
    assert st.status_summary()["scheduled"] == 1
    assert set(st.pending_uploads()) == {scheduled}
    shown = CliRunner().invoke(main, ["jobs", "show", upload_id, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["stored"] == 1188
    listed = CliRunner().invoke(main, ["jobs", "list", "--json"])
    assert [j["upload_id"] for j in json.loads(listed.output)] == [scheduled]
    status = CliRunner().invoke(main, ["status", "--json"])
    assert status.exit_code == 0 and json.loads(status.output)["jobs"]["scheduled"] == 1


# --- retention ------------------------------------------------------------------------------------


def test_cleanup_far_in_the_future_keeps_pending_csvs(s3, redis_client):
    """``--as-of`` a month ahead: the never-processed upload goes, the scheduled and the running
    jobs' CSVs stay (one scheduled beyond as_of, one within it)."""
    from tasks.cleanup.sweep import sweep
    from tasks.csv_batches import processing
    from tests.csv_fixtures import FakeApp, make_spec

    body = "phone number,name\n07700900123,Ann\n"
    scheduled_late = upload(s3, body)
    scheduled_soon = upload(s3, body)
    running = upload(s3, body)
    orphan = upload(s3, body)  # never became a job
    processing.process_job(make_spec(scheduled_late), scheduled_for=soon(6 * 86400), app=FakeApp())
    processing.process_job(make_spec(scheduled_soon), scheduled_for=soon(3600), app=FakeApp())
    st.start_running(running, {"service_id": SERVICE_ID, "source": "csv-upload"})

    for as_of in (soon(30 * 86400), soon(3 * 86400)):
        sweep("csv-upload", dry_run=False, as_of=as_of)
    for kept in (scheduled_late, scheduled_soon, running):
        assert head(s3, kept)["Metadata"] is not None
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError):
        head(s3, orphan)
