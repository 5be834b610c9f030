"""Per-service fairness: slots on the normal lane, the bulk lane beyond them, the job state and
lease types it builds on (in-process S3, the test Redis, a recording fake app)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tasks.csv_batches import fairness, processing
from tasks.csv_batches import state as st
from tasks.csv_batches.lease import JobLease, LeaseLost, Progress
from tests.csv_fixtures import (
    SERVICE_ID,
    FakeApp,
    csv_text,
    make_spec,
    sms_rows,
    upload,
    worker_settings,
)
from worker.runtime.redis_state import get_broker_redis

OTHER_SERVICE = "0b0c0f6e-5b6a-4d7e-9a9b-2f1e3d4c5b6a"


@pytest.fixture
def env(csv_s3):
    st.get_redis().delete(fairness.slots_key(SERVICE_ID), fairness.slots_key(OTHER_SERVICE))
    return csv_s3


def new_id() -> str:
    return str(uuid.uuid4())


# --- slots ---------------------------------------------------------------------------------------


@pytest.fixture
def lane():
    """A private normal-lane queue with one message waiting in it (another job)."""
    queue = f"test-fair-{uuid.uuid4().hex[:8]}"
    get_broker_redis().lpush(queue, "another job's message")
    yield queue
    get_broker_redis().delete(queue, f"{queue}-bulk")


def test_a_service_gets_its_allowance_then_the_bulk_lane(env, monkeypatch, lane):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="2"):
        first, second, third = new_id(), new_id(), new_id()
        fairness.claim_slot(SERVICE_ID, first, lane)
        fairness.claim_slot(SERVICE_ID, second, lane)
        with pytest.raises(fairness.Deferred) as deferred:
            fairness.claim_slot(SERVICE_ID, third, lane)
        assert deferred.value.queue == f"{lane}-bulk"
        # Another service is not affected.
        fairness.claim_slot(OTHER_SERVICE, third, lane)
        # A job claiming again (redelivered, resumed) keeps its slot and counts once.
        fairness.claim_slot(SERVICE_ID, first, lane)
        assert fairness.recent_jobs(SERVICE_ID) == 2
        assert 0 < st.get_redis().ttl(fairness.slots_key(SERVICE_ID)) <= 60
        # Nothing else waits in the lane: nobody to be unfair to, the job runs there.
        get_broker_redis().delete(lane)
        fairness.claim_slot(SERVICE_ID, third, lane)
        assert fairness.recent_jobs(SERVICE_ID) == 3


def test_every_priority_list_of_the_lane_counts_as_waiting(env, monkeypatch, lane):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, new_id(), lane)
        get_broker_redis().delete(lane)
        get_broker_redis().lpush(lane + "\x06\x169", "a low-priority message")
        with pytest.raises(fairness.Deferred):
            fairness.claim_slot(SERVICE_ID, new_id(), lane)
        get_broker_redis().delete(lane + "\x06\x169")


def test_a_job_counts_for_a_window_after_its_last_sign_of_life(env, monkeypatch, lane):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        earlier = new_id()
        fairness.claim_slot(SERVICE_ID, earlier, lane)
        with pytest.raises(fairness.Deferred):
            fairness.claim_slot(SERVICE_ID, new_id(), lane)
        # Its last refresh (or its end) was 11 s ago, beyond the 10 s window.
        st.get_redis().zadd(fairness.slots_key(SERVICE_ID), {earlier: time.time() - 11})
        fairness.claim_slot(SERVICE_ID, new_id(), lane)
        members = st.get_redis().zrange(fairness.slots_key(SERVICE_ID), 0, -1)
        assert earlier not in members and len(members) == 1
        # A refresh never adds a job that holds no slot.
        fairness.touch_slot(SERVICE_ID, earlier)
        assert st.get_redis().zscore(fairness.slots_key(SERVICE_ID), earlier) is None


def test_concurrent_claims_never_exceed_the_allowance(env, monkeypatch, lane):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="3"):
        outcomes: list[bool] = []
        barrier = threading.Barrier(12)

        def claim() -> None:
            barrier.wait()
            try:
                fairness.claim_slot(SERVICE_ID, new_id(), lane)
                outcomes.append(True)
            except fairness.Deferred:
                outcomes.append(False)

        threads = [threading.Thread(target=claim) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(True) == 3 and outcomes.count(False) == 9
        assert fairness.recent_jobs(SERVICE_ID) == 3


def test_lanes():
    assert fairness.on_normal_lane("csv-batches") and not fairness.on_bulk_lane("csv-batches")
    assert fairness.on_bulk_lane("csv-batches-bulk")
    assert not fairness.on_normal_lane("csv-batches-bulk")
    assert not fairness.on_normal_lane(None) and not fairness.on_bulk_lane(None)


# --- through process_job ------------------------------------------------------------------------


def test_a_job_beyond_the_allowance_is_deferred_before_anything_happens(env, monkeypatch, lane):
    busy = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    waiting = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, busy, lane)  # a job of this service runs
        app = FakeApp()
        with pytest.raises(fairness.Deferred) as deferred:
            processing.process_job(make_spec(waiting), app=app, queue=lane)
        assert deferred.value.queue == f"{lane}-bulk"
        assert app.sent == [] and st.read_job(waiting) is None  # nothing run, nothing recorded
        assert st.lease_holder(waiting) is None

        # On the bulk lane it runs, and its batches go to the sink's bulk lane.
        result = processing.process_job(make_spec(waiting), app=app, queue=f"{lane}-bulk")
        assert result["status"] == "ok" and result["rows_dispatched"] == 5
        assert {m["queue"] for m in app.sent} == {"database-tasks-bulk"}
        assert st.read_job(waiting)["queue"] == f"{lane}-bulk"  # re-drives go there too
        assert fairness.recent_jobs(SERVICE_ID) == 1  # the bulk lane took no slot


def test_a_moved_job_the_client_recorded_is_looked_for_on_its_new_lane(env, monkeypatch, lane):
    waiting = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    spec = make_spec(waiting)
    st.record_queued(waiting, spec.task_kwargs(), lane)  # as the web app's client does
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, new_id(), lane)
        with pytest.raises(fairness.Deferred):
            processing.process_job(spec, app=FakeApp(), queue=lane)
    state = st.load_job(waiting)
    assert (state.status, state.queue) == ("queued", f"{lane}-bulk")


def test_a_normal_lane_run_holds_its_slot_while_it_runs(env, monkeypatch, lane):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(1500)))
    seen: list[int] = []
    real_update = st.update_if_holder

    def watching_update(upload: str, token: str, fields: dict) -> bool:
        if "checkpoint" in fields:
            seen.append(fairness.recent_jobs(SERVICE_ID))
        return real_update(upload, token, fields)

    monkeypatch.setattr(st, "update_if_holder", watching_update)
    app = FakeApp()
    result = processing.process_job(make_spec(upload_id), app=app, queue=lane)
    assert result["status"] == "ok"
    assert seen and set(seen) == {1}
    assert {m["queue"] for m in app.sent} == {"database-tasks"}
    # Delivered again after it finished: already done, and still one entry.
    again = processing.process_job(make_spec(upload_id), app=app, queue=lane)
    assert again["reason"] == "already_done" and fairness.recent_jobs(SERVICE_ID) == 1


def test_a_duplicate_delivery_is_skipped_and_counts_once(env, monkeypatch, lane):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, upload_id, lane)  # the runner's
        assert st.acquire_lease(upload_id, "the-runner", 60)
        result = processing.process_job(make_spec(upload_id), app=FakeApp(), queue=lane)
        assert result["reason"] == "already_running"
        assert fairness.recent_jobs(SERVICE_ID) == 1
        st.release_lease(upload_id, "the-runner")


def test_a_job_run_in_process_takes_no_slot(env, monkeypatch, lane):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, new_id(), lane)
        result = processing.process_job(make_spec(upload_id), app=FakeApp())
        assert result["status"] == "ok"
        assert fairness.recent_jobs(SERVICE_ID) == 1


# --- the job state type and the lease -----------------------------------------------------------


def test_job_state_reads_the_hash_and_writes_the_same_fields(env):
    raw = {
        "status": "running",
        "service_id": SERVICE_ID,
        "total": "12",
        "dispatched": "10",
        "invalid": "2",
        "checkpoint": "12",
        "scanned": "1",
        "bulk": "0",
        "heartbeat": "1700000000.5",
        "resend": "1",
        "runs": "",
        "stored": "not a number",
        "error_code": "",
    }
    state = st.JobState.from_hash("u", raw)
    assert (state.total, state.dispatched, state.invalid, state.checkpoint) == (12, 10, 2, 12)
    assert state.scanned and not state.bulk and state.resend
    assert state.heartbeat == 1700000000.5 and state.runs == 0 and state.stored == 0
    assert state.error_code is None and state.finished_at is None
    assert state.counters == st.Counters(12, 10, 2)
    assert state.to_fields("total", "scanned", "bulk", "heartbeat", "status") == {
        "total": "12",
        "scanned": "1",
        "bulk": "0",
        "heartbeat": "1700000000.5",
        "status": "running",
    }
    # Every field round-trips through the hash's text.
    assert st.JobState.from_hash("u", state.to_fields()) == state
    empty = st.JobState("u")
    assert empty.skipped("already_done")["rows_total"] == 0 and not empty.done


def test_the_lease_is_held_once_recorded_refreshed_and_lost(env, monkeypatch):
    upload_id = new_id()
    with worker_settings(monkeypatch, NOTIFY_JOB_STALE_SECONDS="1"):
        with JobLease.hold(upload_id) as lease:
            assert lease is not None
            with JobLease.hold(upload_id) as second:
                assert second is None  # one runner per job
            lease.record(Progress(checkpoint=1000, dispatched=990, invalid=10))
            state = st.load_job(upload_id)
            assert (state.checkpoint, state.dispatched, state.invalid) == (1000, 990, 10)
            assert state.heartbeat and time.time() - state.heartbeat < 5
            # Expired and taken by another runner: lost.
            st.get_redis().set(st.lease_key(upload_id), "someone-else")
            with pytest.raises(LeaseLost):
                lease.confirm()
        assert st.lease_holder(upload_id) == "someone-else"  # not released: not ours
        st.get_redis().delete(st.lease_key(upload_id))
        with JobLease.hold(upload_id, progress_prefix="resend_") as lease:
            lease.record(Progress(5, 4, 1))
            assert st.load_job(upload_id).resend_dispatched == 4
            assert st.load_job(upload_id).dispatched == 990  # the job's own are untouched
        assert st.lease_holder(upload_id) is None
    st.get_redis().delete(st.job_key(upload_id))
