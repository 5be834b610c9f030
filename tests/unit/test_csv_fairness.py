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
    csv_s3,  # noqa: F401  (fixture)
    csv_text,
    make_spec,
    module_mock_s3,  # noqa: F401  (fixture)
    sms_rows,
    upload,
    worker_settings,
)

OTHER_SERVICE = "0b0c0f6e-5b6a-4d7e-9a9b-2f1e3d4c5b6a"


@pytest.fixture
def env(csv_s3):  # noqa: F811
    st.get_redis().delete(fairness.slots_key(SERVICE_ID), fairness.slots_key(OTHER_SERVICE))
    return csv_s3


def new_id() -> str:
    return str(uuid.uuid4())


# --- slots ---------------------------------------------------------------------------------------


def test_a_service_gets_its_allowance_then_the_bulk_lane(env, monkeypatch):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="2"):
        first, second, third = new_id(), new_id(), new_id()
        fairness.claim_slot(SERVICE_ID, first, "csv-batches")
        fairness.claim_slot(SERVICE_ID, second, "csv-batches")
        with pytest.raises(fairness.Deferred) as deferred:
            fairness.claim_slot(SERVICE_ID, third, "csv-batches")
        assert deferred.value.queue == "csv-batches-bulk"
        with pytest.raises(fairness.Deferred) as deferred:
            fairness.claim_slot(SERVICE_ID, third, "test-csv-1234")
        assert deferred.value.queue == "test-csv-1234-bulk"
        # Another service is not affected.
        fairness.claim_slot(OTHER_SERVICE, third, "csv-batches")
        # A job claiming again (redelivered, resumed) keeps its slot and counts once.
        fairness.claim_slot(SERVICE_ID, first, "csv-batches")
        assert fairness.jobs_in_flight(SERVICE_ID) == 2
        # A slot given back is free for the next job.
        fairness.release_slot(SERVICE_ID, first)
        fairness.claim_slot(SERVICE_ID, third, "csv-batches")
        assert fairness.jobs_in_flight(SERVICE_ID) == 2
        assert 0 < st.get_redis().ttl(fairness.slots_key(SERVICE_ID)) <= 2 * 300


def test_an_abandoned_slot_is_taken_back_after_the_stale_period(env, monkeypatch):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1", NOTIFY_JOB_STALE_SECONDS="60"):
        dead = new_id()
        fairness.claim_slot(SERVICE_ID, dead, "csv-batches")
        with pytest.raises(fairness.Deferred):
            fairness.claim_slot(SERVICE_ID, new_id(), "csv-batches")
        # Its worker died 61 s ago: no refresh since.
        st.get_redis().zadd(fairness.slots_key(SERVICE_ID), {dead: time.time() - 61})
        fairness.claim_slot(SERVICE_ID, new_id(), "csv-batches")
        members = st.get_redis().zrange(fairness.slots_key(SERVICE_ID), 0, -1)
        assert dead not in members and len(members) == 1
        # A live job's refresh keeps it (refresh never adds a job that holds no slot).
        fairness.refresh_slot(SERVICE_ID, dead)
        assert st.get_redis().zscore(fairness.slots_key(SERVICE_ID), dead) is None


def test_concurrent_claims_never_exceed_the_allowance(env, monkeypatch):
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="3"):
        outcomes: list[bool] = []
        barrier = threading.Barrier(12)

        def claim() -> None:
            barrier.wait()
            try:
                fairness.claim_slot(SERVICE_ID, new_id(), "csv-batches")
                outcomes.append(True)
            except fairness.Deferred:
                outcomes.append(False)

        threads = [threading.Thread(target=claim) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes.count(True) == 3 and outcomes.count(False) == 9
        assert fairness.jobs_in_flight(SERVICE_ID) == 3


def test_lanes():
    assert fairness.on_normal_lane("csv-batches") and not fairness.on_bulk_lane("csv-batches")
    assert fairness.on_bulk_lane("csv-batches-bulk") and not fairness.on_normal_lane(
        "csv-batches-bulk"
    )
    assert not fairness.on_normal_lane(None) and not fairness.on_bulk_lane(None)


# --- through process_job ------------------------------------------------------------------------


def test_a_job_beyond_the_allowance_is_deferred_before_anything_happens(env, monkeypatch):
    busy = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    waiting = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, busy, "csv-batches")  # a job of this service runs
        app = FakeApp()
        with pytest.raises(fairness.Deferred) as deferred:
            processing.process_job(make_spec(waiting), app=app, queue="csv-batches")
        assert deferred.value.queue == "csv-batches-bulk"
        assert app.sent == [] and st.read_job(waiting) is None  # nothing run, nothing recorded
        assert st.lease_holder(waiting) is None

        # On the bulk lane it runs, and its batches go to the sink's bulk lane.
        result = processing.process_job(make_spec(waiting), app=app, queue="csv-batches-bulk")
        assert result["status"] == "ok" and result["rows_dispatched"] == 5
        assert {m["queue"] for m in app.sent} == {"database-tasks-bulk"}
        assert st.read_job(waiting)["queue"] == "csv-batches-bulk"  # re-drives go there too
        assert fairness.jobs_in_flight(SERVICE_ID) == 1  # the bulk lane took no slot


def test_a_normal_lane_run_holds_its_slot_while_it_runs_and_gives_it_back(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(1500)))
    seen: list[int] = []
    real_update = st.update_if_holder

    def watching_update(upload: str, token: str, fields: dict) -> bool:
        if "checkpoint" in fields:
            seen.append(fairness.jobs_in_flight(SERVICE_ID))
        return real_update(upload, token, fields)

    monkeypatch.setattr(st, "update_if_holder", watching_update)
    app = FakeApp()
    result = processing.process_job(make_spec(upload_id), app=app, queue="csv-batches")
    assert result["status"] == "ok"
    assert seen and set(seen) == {1}
    assert fairness.jobs_in_flight(SERVICE_ID) == 0
    assert {m["queue"] for m in app.sent} == {"database-tasks"}
    # Run again (a redelivery after it finished): already done, no slot left behind.
    again = processing.process_job(make_spec(upload_id), app=app, queue="csv-batches")
    assert again["reason"] == "already_done" and fairness.jobs_in_flight(SERVICE_ID) == 0


def test_a_duplicate_delivery_does_not_free_the_runners_slot(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, upload_id, "csv-batches")  # the runner's
        assert st.acquire_lease(upload_id, "the-runner", 60)
        result = processing.process_job(make_spec(upload_id), app=FakeApp(), queue="csv-batches")
        assert result["reason"] == "already_running"
        assert fairness.jobs_in_flight(SERVICE_ID) == 1
        st.release_lease(upload_id, "the-runner")


def test_a_job_run_in_process_takes_no_slot(env, monkeypatch):
    upload_id = upload(env, csv_text(["phone number", "name"], sms_rows(5)))
    with worker_settings(monkeypatch, NOTIFY_SERVICE_BURST_JOBS="1"):
        fairness.claim_slot(SERVICE_ID, new_id(), "csv-batches")
        result = processing.process_job(make_spec(upload_id), app=FakeApp())
        assert result["status"] == "ok"


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
