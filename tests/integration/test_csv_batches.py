"""CSV jobs through real parts: moto server over HTTP, the test Redis, real workers."""

from __future__ import annotations

import json
import math
import uuid

import pytest

from tasks.csv_batches import state as st
from tests.csv_fixtures import (
    SERVICE_ID,
    TEMPLATE_ID,
    broker_messages,
    csv_text,
    head,
    job_kwargs,
    sms_rows,
    upload,
    wait_for,
)

pytestmark = pytest.mark.integration


def stored_rows(redis_client, upload_id: str) -> dict[str, dict]:
    raw = redis_client.hgetall(st.notifications_key(upload_id))
    return {k: json.loads(v) for k, v in raw.items()}


def test_job_runs_through_the_worker_and_the_built_in_sink(celery_worker, s3, redis_client):
    from worker.client import NotifyClient

    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(2500, bad_every=50)))
    result = (
        NotifyClient()
        .process_csv(
            SERVICE_ID,
            upload_id,
            template_id=TEMPLATE_ID,
            template_type="sms",
            placeholders=["name"],
            notification_count=2500,
        )
        .get(timeout=60)
    )
    assert result["status"] == "ok", result
    assert (result["rows_total"], result["rows_dispatched"], result["rows_invalid"]) == (
        2500,
        2450,
        50,
    )
    wait_for(lambda: st.read_progress(upload_id)["stored"] == 2450, timeout=60)
    rows = stored_rows(redis_client, upload_id)
    assert len(rows) == 2450
    one = rows[str(uuid.uuid5(uuid.UUID(upload_id), "1"))]
    assert one == {
        "notification_id": str(uuid.uuid5(uuid.UUID(upload_id), "1")),
        "upload_id": upload_id,
        "service_id": SERVICE_ID,
        "template_id": TEMPLATE_ID,
        "template_type": "sms",
        "sender_id": None,
        "row_number": 1,
        "recipient": "447700900001",
        "personalisation": {"phone number": "07700 900001", "name": "Person 1"},
    }
    # Every key we wrote has an expiry now that the job is done.
    for name in redis_client.scan_iter("notify:*"):
        if name.startswith("notify:deliveries:"):
            continue
        assert redis_client.ttl(name) > 0, name


def test_messages_on_the_real_broker_have_the_spec_shape(s3, redis_client, monkeypatch):
    from tasks.csv_batches import processing
    from tests.csv_fixtures import make_spec, worker_settings
    from worker.runtime.settings import get_worker_settings

    queue = f"test-sink-{uuid.uuid4()}"  # no worker consumes it
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(2100, bad_every=100)))
    with worker_settings(monkeypatch, NOTIFY_ROW_SINK_QUEUE=queue):
        result = processing.process_job(make_spec(upload_id))
        messages = broker_messages(get_worker_settings().redis_url, queue)
        redis_client.delete(queue)
    assert result["rows_dispatched"] == 2079
    assert len(messages) == math.ceil(2079 / 1000)  # one message per 1,000 rows at most
    for message in messages:
        headers = message["headers"]
        assert headers["task"] == "notify.notifications.save_batch"
        assert headers.get("eta") is None and headers.get("countdown") is None
        assert (
            headers["kwargsrepr"].startswith("{'batch': '<") and "0770" not in headers["kwargsrepr"]
        )
        assert headers["argsrepr"] == "()"
        assert message["args"] == []
        assert set(message["kwargs"]) == {"batch"}
    rows = [r for m in messages for r in m["kwargs"]["batch"]["rows"]]
    assert [len(m["kwargs"]["batch"]["rows"]) for m in messages] == [1000, 1000, 79]
    assert [r["row_number"] for r in rows] == [n for n in range(1, 2101) if n % 100]


def test_same_task_twice_after_finish_changes_nothing(celery_worker, s3, redis_client):
    from worker.client import send_by_name

    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(1500, bad_every=10)))
    kwargs = job_kwargs(upload_id)
    first = send_by_name("notify.csv.process_batch", kwargs).get(timeout=60)
    assert first["status"] == "ok"
    wait_for(lambda: st.read_progress(upload_id)["stored"] == 1350, timeout=60)
    stamp = head(s3, upload_id)["LastModified"]
    again = send_by_name("notify.csv.process_batch", kwargs).get(timeout=60)
    assert again["status"] == "skipped"
    assert (again["rows_total"], again["rows_dispatched"], again["rows_invalid"]) == (
        1500,
        1350,
        150,
    )
    assert head(s3, upload_id)["LastModified"] == stamp  # metadata written once
    assert redis_client.llen("database-tasks") == 0  # nothing sent the second time
    assert st.read_progress(upload_id)["stored"] == 1350
    assert redis_client.hlen(st.notifications_key(upload_id)) == 1350


def test_contact_list_job_through_the_worker(celery_worker, s3, redis_client):
    from worker.client import NotifyClient

    upload_id = upload(s3, "phone number\n07700900123\n07700900124\n", source="contact-list")
    result = (
        NotifyClient()
        .process_csv(
            SERVICE_ID,
            upload_id,
            template_id=TEMPLATE_ID,
            template_type="sms",
            source="contact-list",
        )
        .get(timeout=60)
    )
    assert result["rows_dispatched"] == 2
    wait_for(lambda: st.read_progress(upload_id)["stored"] == 2, timeout=30)
    meta = head(s3, upload_id, source="contact-list")["Metadata"]
    assert meta["processing_status"] == "finished" and meta["valid"] == "True"


def _broker_url() -> str:
    from worker.runtime.settings import get_worker_settings

    return get_worker_settings().redis_url


def private_queues() -> tuple[str, str]:
    """A job queue and a sink queue that only this test's prefork worker knows about.

    The session's thread worker (``celery_worker``) consumes every standard queue; a prefork
    test on the standard names would race it for its own messages.
    """
    tag = uuid.uuid4().hex[:8]
    return f"test-csv-{tag}", f"test-sink-{tag}"


@pytest.mark.slow
def test_two_deliveries_at_once_run_the_job_once(prefork_worker, s3, redis_client):
    from worker.runtime.app import app

    job_queue, sink_queue = private_queues()
    # The sink's queue is not consumed: the test reads every batch the job sent.
    prefork_worker(concurrency=2, queues=job_queue, NOTIFY_ROW_SINK_QUEUE=sink_queue)
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(40_000, bad_every=20)))
    kwargs = job_kwargs(upload_id)
    results = [
        app.send_task("notify.csv.process_batch", kwargs=kwargs, queue=job_queue) for _ in range(2)
    ]
    outcomes = sorted((r.get(timeout=120) for r in results), key=lambda r: r["status"])
    assert [o["status"] for o in outcomes] == ["ok", "skipped"], outcomes
    assert outcomes[1]["reason"] in ("already_running", "already_done")
    # 40,000 rows is a big job: its batches went to the bulk variant of the sink queue.
    assert broker_messages(_broker_url(), sink_queue) == []
    messages = broker_messages(_broker_url(), f"{sink_queue}-bulk")
    redis_client.delete(f"{sink_queue}-bulk")
    rows = [r["notification_id"] for m in messages for r in m["kwargs"]["batch"]["rows"]]
    assert len(rows) == len(set(rows)) == 38_000
    assert st.read_job(upload_id)["runs"] == "1"


@pytest.mark.slow
def test_a_job_killed_mid_way_resumes_and_the_sink_holds_each_row_once(
    prefork_worker, s3, redis_client
):
    """SIGKILL the worker mid-dispatch; the reconciler re-drives the job, a new worker resumes
    it after its checkpoint; later the original message comes back and changes nothing."""
    import time

    from celery.result import AsyncResult

    from tasks.csv_batches import recovery
    from worker.runtime.app import app

    job_queue, sink_queue = private_queues()
    env = {
        "NOTIFY_JOB_STALE_SECONDS": "2",
        "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": "20",
        "NOTIFY_TASK_TIME_LIMIT_SECONDS": "18",
        "NOTIFY_ROW_SINK_QUEUE": sink_queue,
    }
    first = prefork_worker(concurrency=1, queues=job_queue, **env)
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(100_000, bad_every=50)))
    valid = 98_000
    original = app.send_task(
        "notify.csv.process_batch", kwargs=job_kwargs(upload_id), queue=job_queue
    )

    def mid_dispatch():
        progress = st.read_progress(upload_id)
        return progress and progress["status"] == "running" and progress["checkpoint"] > 0

    wait_for(mid_dispatch, timeout=60, interval=0.01)
    first.kill()
    killed_at = time.monotonic()
    at_kill = st.read_progress(upload_id)
    assert 0 < at_kill["checkpoint"] < 100_000, at_kill
    assert "processing_status" not in head(s3, upload_id)["Metadata"]

    # The new worker also drains the sink's queues into the built-in sink.
    sink_queues = f"{job_queue},{sink_queue},{sink_queue}-bulk"
    second = prefork_worker(concurrency=2, queues=sink_queues, **env)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NOTIFY_JOB_STALE_SECONDS", "2")
        from worker.runtime.settings import reload_worker_settings

        reload_worker_settings()
        try:
            wait_for(lambda: recovery.reconcile()["resumed"] == 1, timeout=30, interval=0.5)
        finally:
            patch.undo()
            reload_worker_settings()

    wait_for(lambda: st.read_progress(upload_id)["status"] == "finished", timeout=90)
    progress = st.read_progress(upload_id)
    assert (progress["total"], progress["dispatched"], progress["invalid"]) == (
        100_000,
        valid,
        2_000,
    )
    assert st.read_job(upload_id)["runs"] == "2"
    assert f"resuming after row {at_kill['checkpoint']}" in second.log()
    wait_for(lambda: st.read_progress(upload_id)["stored"] == valid, timeout=90)
    assert redis_client.hlen(st.notifications_key(upload_id)) == valid
    meta = head(s3, upload_id)["Metadata"]
    assert meta["processing_rows_dispatched"] == str(valid)
    stamp = head(s3, upload_id)["LastModified"]

    # The killed delivery is still unacknowledged; once the visibility timeout has passed, a
    # starting worker restores it. Running it again changes nothing.
    second.stop()
    time.sleep(max(0.0, 21 - (time.monotonic() - killed_at)))
    prefork_worker(concurrency=1, queues=sink_queues, **env)
    replay = AsyncResult(original.id, app=app).get(timeout=60)
    assert replay["status"] == "skipped" and replay["reason"] == "already_done"
    assert replay["rows_dispatched"] == valid
    assert head(s3, upload_id)["LastModified"] == stamp
    assert st.read_progress(upload_id)["stored"] == valid
    assert redis_client.hlen(st.notifications_key(upload_id)) == valid
