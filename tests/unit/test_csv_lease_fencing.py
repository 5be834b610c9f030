"""A CSV runner that comes back after its lease expired writes nothing over the job's new
runner: progress is written only while the lease is held, and an expired lease is taken back
only if nobody ran the job since. (The partition test shows it with real workers:
tests/integration/test_partition.py.)"""

from __future__ import annotations

import uuid

import pytest

from tasks.csv_batches import state as st
from tasks.csv_batches.lease import JobLease, LeaseLost, Progress

TTL = 30


@pytest.fixture
def job(redis_client) -> str:
    upload_id = str(uuid.uuid4())
    redis_client.hset(st.job_key(upload_id), mapping={"status": "running", "runner": "a"})
    assert st.acquire_lease(upload_id, "a", TTL)
    return upload_id


def lease(upload_id: str, token: str, **kw) -> JobLease:
    return JobLease(upload_id, token, TTL, **kw)


def test_the_holder_records_progress(job, redis_client):
    lease(job, "a").record(Progress(1000, 990, 10))
    assert redis_client.hget(st.job_key(job), "checkpoint") == "1000"
    assert st.update_if_holder(job, "a", {"x": 1})
    assert not st.update_if_holder(job, "b", {"x": 2})
    assert redis_client.hget(st.job_key(job), "x") == "1"


def test_an_expired_lease_nobody_took_is_taken_back(job, redis_client):
    redis_client.delete(st.lease_key(job))  # expired while the runner was slow
    lease(job, "a").record(Progress(2000, 1990, 10))
    assert st.lease_holder(job) == "a"
    assert redis_client.hget(st.job_key(job), "checkpoint") == "2000"


def test_a_runner_whose_job_was_taken_over_writes_nothing(job, redis_client):
    redis_client.delete(st.lease_key(job))
    assert st.acquire_lease(job, "b", TTL)  # the re-driven run on another host
    redis_client.hset(st.job_key(job), mapping={"runner": "b", "checkpoint": "5000"})
    with pytest.raises(LeaseLost):
        lease(job, "a").record(Progress(3000, 2990, 10))
    with pytest.raises(LeaseLost):
        lease(job, "a").confirm()
    assert redis_client.hget(st.job_key(job), "checkpoint") == "5000"
    assert st.lease_holder(job) == "b"


def test_a_runner_coming_back_after_the_new_runner_finished_cannot_take_the_lease(
    job, redis_client
):
    redis_client.delete(st.lease_key(job))
    redis_client.hset(
        st.job_key(job), mapping={"runner": "b", "status": "finished", "checkpoint": "9000"}
    )  # the other run finished and released its lease
    comeback = lease(job, "a")
    with pytest.raises(LeaseLost):
        comeback.record(Progress(3000, 2990, 10))
    with pytest.raises(LeaseLost):
        comeback.confirm()
    assert st.lease_holder(job) is None
    assert redis_client.hget(st.job_key(job), "checkpoint") == "9000"
    assert redis_client.hget(st.job_key(job), "status") == "finished"


def test_a_resend_pass_never_takes_an_expired_lease_back(job, redis_client):
    redis_client.delete(st.lease_key(job))
    with pytest.raises(LeaseLost):
        lease(job, "a", progress_prefix="resend_").confirm()
