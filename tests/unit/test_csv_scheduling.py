"""Scheduled jobs, cancel, release and recovery, called directly (fake app records sends)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from storage.errors import InvalidInput
from storage.keys import isoformat
from tasks.csv_batches import processing, recovery, scheduling
from tasks.csv_batches import state as st
from tests.csv_fixtures import (
    SERVICE_ID,
    FakeApp,
    head,
    make_spec,
    upload,
    worker_settings,
)

BODY = "phone number,name\n07700900123,Ann\n07700900124,Bob\n"


@pytest.fixture
def env(csv_s3):
    return csv_s3


def later(seconds: float) -> str:
    return isoformat(datetime.now(UTC) + timedelta(seconds=seconds))


def schedule(upload_id: str, seconds: float = 3600, app: FakeApp | None = None, **kw):
    return processing.process_job(
        make_spec(upload_id, **kw), scheduled_for=later(seconds), app=app or FakeApp()
    )


def test_a_scheduled_job_is_recorded_and_does_nothing_before_its_time(env):
    upload_id = upload(env, BODY)
    before = head(env, upload_id)
    app = FakeApp()
    result = schedule(upload_id, 3600, app)
    assert result["status"] == "ok" and result["job_status"] == "scheduled"
    assert app.sent == []
    meta = head(env, upload_id)["Metadata"]
    assert meta["scheduled_for"] == result["scheduled_for"]
    assert meta["uploaded_at"] == isoformat(before["LastModified"])  # the copy reset it
    assert meta["original_file_name"] == before["Metadata"]["original_file_name"]
    assert "processing_status" not in meta
    assert st.read_progress(upload_id)["status"] == "scheduled"
    assert upload_id in st.scheduled_members()
    assert st.pending_uploads()[upload_id]["status"] == "scheduled"
    released = scheduling.release_due(app=app)
    assert released["released"] == 0 and app.sent == []


def test_scheduling_twice_is_idempotent_and_rewrites_nothing(env):
    upload_id = upload(env, BODY)
    due = later(3600)
    spec = make_spec(upload_id)
    processing.process_job(spec, scheduled_for=due, app=FakeApp())
    stamp = head(env, upload_id)["LastModified"]
    again = processing.process_job(spec, scheduled_for=due, app=FakeApp())
    assert again["job_status"] == "scheduled"
    assert head(env, upload_id)["LastModified"] == stamp
    assert len(st.scheduled_members()) == 1


def test_release_starts_each_due_job_exactly_once_on_its_queue(env, monkeypatch):
    small = upload(env, BODY)
    big = upload(env, BODY, metadata={"notification_count": "9000"})
    schedule(small, 60)
    schedule(big, 60)
    app = FakeApp()
    assert scheduling.release_due(app=app, now=time.time())["released"] == 0
    result = scheduling.release_due(app=app, now=time.time() + 61)
    assert result["released"] == 2
    sent = {m["kwargs"]["upload_id"]: m for m in app.sent}
    assert sent[small]["queue"] == "csv-batches"
    assert sent[big]["queue"] == "csv-batches-bulk"  # the web app's count says it is big
    message = sent[small]
    assert message["name"] == "notify.csv.process_batch"
    assert "scheduled_for" not in message["kwargs"]
    assert "eta" not in message and "countdown" not in message
    assert message["kwargs"] == make_spec(small).task_kwargs()
    assert st.read_progress(small)["status"] == "queued"
    # A second release (another beat tick, another worker) finds nothing.
    assert scheduling.release_due(app=app, now=time.time() + 61)["released"] == 0
    assert len(app.sent) == 2


def test_concurrent_releases_claim_each_job_once(env):
    upload_id = upload(env, BODY)
    schedule(upload_id, 1)
    assert st.claim_due(upload_id) is True
    assert st.claim_due(upload_id) is False


def test_the_released_job_runs_and_a_late_duplicate_of_the_original_is_skipped(env):
    upload_id = upload(env, BODY)
    due = later(1)
    spec = make_spec(upload_id)
    processing.process_job(spec, scheduled_for=due, app=FakeApp())
    app = FakeApp()
    scheduling.release_due(app=app, now=time.time() + 2)
    kwargs = app.sent[0]["kwargs"]
    runner = FakeApp()
    result = processing.process_job(make_spec(kwargs["upload_id"]), app=runner)
    assert result["status"] == "ok" and result["rows_dispatched"] == 2
    meta = head(env, upload_id)["Metadata"]
    assert meta["processing_status"] == "finished" and meta["scheduled_for"] == due
    duplicate = FakeApp()
    again = processing.process_job(spec, scheduled_for=due, app=duplicate)
    assert again["status"] == "skipped" and duplicate.sent == []
    assert upload_id not in st.pending_uploads()


def test_scheduled_for_more_than_7_days_ahead_is_refused(env):
    upload_id = upload(env, BODY)
    with pytest.raises(InvalidInput) as caught:
        schedule(upload_id, 8 * 24 * 3600)
    assert caught.value.code == "invalid_scheduled_for"
    assert st.read_job(upload_id) is None


def test_scheduled_for_in_the_past_runs_now(env):
    upload_id = upload(env, BODY)
    app = FakeApp()
    result = schedule(upload_id, -60, app)
    assert result["job_status"] == "finished" and len(app.rows()) == 2


# --- cancel -------------------------------------------------------------------------------------


def test_a_cancelled_job_never_runs(env):
    upload_id = upload(env, BODY)
    schedule(upload_id, 60)
    result = scheduling.cancel_job(SERVICE_ID, upload_id)
    assert result == {"status": "ok", "upload_id": upload_id, "job_status": "cancelled"}
    meta = head(env, upload_id)["Metadata"]
    assert meta["processing_status"] == "cancelled"
    assert meta["processing_finished_at"] and meta["scheduled_for"]
    app = FakeApp()
    assert scheduling.release_due(app=app, now=time.time() + 120)["released"] == 0
    # Even a direct delivery of the job does nothing now.
    again = processing.process_job(make_spec(upload_id), app=app)
    assert again["status"] == "skipped" and app.sent == []
    assert scheduling.cancel_job(SERVICE_ID, upload_id)["status"] == "skipped"
    assert upload_id not in st.pending_uploads()


def test_cancel_after_release_or_finish_is_refused(env):
    upload_id = upload(env, BODY)
    schedule(upload_id, 1)
    scheduling.release_due(app=FakeApp(), now=time.time() + 2)
    with pytest.raises(InvalidInput) as caught:
        scheduling.cancel_job(SERVICE_ID, upload_id)
    assert caught.value.code == "job_already_started"
    processing.process_job(make_spec(upload_id), app=FakeApp())
    with pytest.raises(InvalidInput) as caught:
        scheduling.cancel_job(SERVICE_ID, upload_id)
    assert caught.value.code == "job_already_finished"


def test_cancel_of_an_unknown_or_unscheduled_job(env):
    upload_id = upload(env, BODY)
    with pytest.raises(InvalidInput) as caught:
        scheduling.cancel_job(SERVICE_ID, upload_id)
    assert caught.value.code == "job_not_found"
    with pytest.raises(InvalidInput):
        scheduling.cancel_job(SERVICE_ID, "not-a-uuid")


def test_cancel_works_from_metadata_when_redis_lost_the_schedule(env, redis_client):
    upload_id = upload(env, BODY)
    schedule(upload_id, 60)
    for name in list(redis_client.scan_iter("notify:*")):
        redis_client.delete(name)
    assert scheduling.cancel_job(SERVICE_ID, upload_id)["job_status"] == "cancelled"
    assert head(env, upload_id)["Metadata"]["processing_status"] == "cancelled"
    # The rebuild from metadata must not bring it back.
    assert recovery.reconcile(app=FakeApp(), rebuild=True)["rescheduled"] == 0
    assert upload_id not in st.scheduled_members()


def test_a_cancel_racing_the_start_wins_or_loses_cleanly(env):
    upload_id = upload(env, BODY)
    schedule(upload_id, 60)
    scheduling.cancel_job(SERVICE_ID, upload_id)
    # A start that read the state before the cancel cannot overwrite it.
    assert st.start_running(upload_id, {"service_id": SERVICE_ID}) is False
    assert st.read_progress(upload_id)["status"] == "cancelled"


# --- recovery -----------------------------------------------------------------------------------


def test_lost_redis_schedule_is_rebuilt_from_metadata_and_runs_once(env, redis_client):
    upload_id = upload(env, BODY, metadata={"notification_count": "2", "valid": "True"})
    due = later(30)
    processing.process_job(make_spec(upload_id), scheduled_for=due, app=FakeApp())
    for name in list(redis_client.scan_iter("notify:*")):  # Redis restarted without its data
        redis_client.delete(name)
    result = recovery.reconcile(app=FakeApp())  # no sentinel: rebuild
    assert result["rebuilt"] == 1 and result["rescheduled"] == 1
    assert st.read_progress(upload_id)["scheduled_for"] == due
    assert recovery.reconcile(app=FakeApp())["rescheduled"] == 0  # sentinel set: cheap pass
    app = FakeApp()
    assert scheduling.release_due(app=app, now=time.time())["released"] == 0
    assert scheduling.release_due(app=app, now=time.time() + 31)["released"] == 1
    assert scheduling.release_due(app=app, now=time.time() + 31)["released"] == 0
    assert app.sent[0]["kwargs"] == make_spec(upload_id).task_kwargs()


def test_a_missing_due_index_entry_is_repaired(env, redis_client):
    upload_id = upload(env, BODY)
    schedule(upload_id, 60)
    redis_client.zrem(st.SCHEDULED_KEY, upload_id)
    st.set_sentinel()
    assert recovery.reconcile(app=FakeApp())["rescheduled"] == 1
    assert upload_id in st.scheduled_members()


def test_a_silent_running_job_is_redriven_once_to_its_queue(env, monkeypatch):
    upload_id = upload(env, BODY)
    spec = make_spec(upload_id)
    st.start_running(
        upload_id,
        {
            "service_id": SERVICE_ID,
            "source": "csv-upload",
            "params": spec.params_json(),
            "queue": "csv-batches-bulk",
        },
    )
    st.set_sentinel()
    app = FakeApp()
    assert recovery.reconcile(app=app)["resumed"] == 0  # heartbeat is fresh
    with worker_settings(monkeypatch, NOTIFY_JOB_STALE_SECONDS="1"):
        st.update(upload_id, {})
        redis_client_time = time.time()
        monkeypatch.setattr(time, "time", lambda: redis_client_time + 5)
        assert recovery.reconcile(app=app)["resumed"] == 1
        assert recovery.reconcile(app=app)["resumed"] == 0  # one re-drive per period
        assert st.status_summary()["stuck"] == 1
    assert app.sent[0]["queue"] == "csv-batches-bulk"
    assert app.sent[0]["kwargs"] == spec.task_kwargs()


def test_a_running_job_with_a_live_lease_is_left_alone(env, monkeypatch):
    upload_id = upload(env, BODY)
    spec = make_spec(upload_id)
    st.start_running(
        upload_id, {"service_id": SERVICE_ID, "source": "csv-upload", "params": spec.params_json()}
    )
    st.acquire_lease(upload_id, "alive", 60)
    st.set_sentinel()
    now = time.time()
    with worker_settings(monkeypatch, NOTIFY_JOB_STALE_SECONDS="1"):
        monkeypatch.setattr(time, "time", lambda: now + 5)
        assert recovery.reconcile(app=FakeApp())["resumed"] == 0


# --- progress and the indexes other areas read ----------------------------------------------------


def test_pending_uploads_and_status_summary(env):
    scheduled = upload(env, BODY)
    running = upload(env, BODY)
    done = upload(env, BODY)
    schedule(scheduled, 600)
    st.start_running(running, {"service_id": SERVICE_ID, "source": "csv-upload"})
    processing.process_job(make_spec(done), app=FakeApp())
    pending = st.pending_uploads()
    assert set(pending) == {scheduled, running}
    assert pending[scheduled]["scheduled_for"] and pending[scheduled]["service_id"] == SERVICE_ID
    assert pending[running]["status"] == "running"
    assert st.status_summary() == {"running": 1, "queued": 0, "scheduled": 1, "stuck": 0}


def test_a_job_that_dies_on_every_run_is_failed_not_redriven_forever(env, monkeypatch):
    upload_id = upload(env, BODY)
    spec = make_spec(upload_id)
    fields = {"service_id": SERVICE_ID, "source": "csv-upload", "params": spec.params_json()}
    for _ in range(5):  # NOTIFY_MAX_REDELIVERIES (3) + 2 starts, none finished
        st.start_running(upload_id, fields)
    st.set_sentinel()
    now = time.time()
    app = FakeApp()
    with worker_settings(monkeypatch, NOTIFY_JOB_STALE_SECONDS="1"):
        monkeypatch.setattr(time, "time", lambda: now + 5)
        assert recovery.reconcile(app=app)["resumed"] == 0
    assert app.sent == []
    progress = st.read_progress(upload_id)
    assert progress["status"] == "failed" and progress["error_code"] == "job_stalled"
    meta = head(env, upload_id)["Metadata"]
    assert meta["processing_status"] == "failed" and meta["processing_error_code"] == "job_stalled"
