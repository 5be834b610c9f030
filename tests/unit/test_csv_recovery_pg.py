"""The reconciler's "were the sink's batches lost?" with the PostgreSQL store: the count comes
from the table, not from the job's Redis counter (which misses a batch whose worker died between
the commit and the counter update). Re-sent rows are stored once."""

from __future__ import annotations

import time

import pytest

from tasks.csv_batches import processing, recovery, sink
from tasks.csv_batches import state as st
from tests.csv_fixtures import (
    FakeApp,
    csv_text,
    make_spec,
    sms_rows,
    upload,
)
from tests.db_fixtures import table_rows

ROWS = sms_rows(2500, bad_every=50)  # 2,450 valid: batches of 1000, 1000, 450
VALID = 2450


@pytest.fixture
def env(recovery_env, pg_url):
    return recovery_env


def finished_job(s3) -> tuple[str, FakeApp]:
    upload_id = upload(s3, csv_text(["phone number", "name"], ROWS))
    app = FakeApp()
    result = processing.process_job(make_spec(upload_id), app=app, queue="csv-batches")
    assert result["status"] == "ok" and result["rows_dispatched"] == VALID
    return upload_id, app


def in_table(pg_url: str, upload_id: str) -> tuple[int, int]:
    sql = "SELECT count(*), count(DISTINCT id) FROM notifications WHERE job_id = %s"
    return table_rows(pg_url, sql, upload_id)[0]


def test_a_lagging_redis_counter_does_not_cause_a_resend(env, pg_url, redis_client):
    upload_id, app = finished_job(env)
    for batch in app.batches():
        sink.save_batch(batch)
    # As if the worker died after the last commit, before its counter update.
    redis_client.hset(st.job_key(upload_id), "stored", 2000)
    reconciler = FakeApp()
    result = recovery.reconcile(app=reconciler, rebuild=False, now=time.time() + 5)
    assert result["resent"] == 0 and reconciler.sent == []
    assert upload_id not in st.watched_jobs()


def test_batches_missing_from_the_table_are_resent_and_stored_once(env, pg_url):
    upload_id, first = finished_job(env)
    sink.save_batch(first.batches()[0])  # the broker lost the other two
    reconciler = FakeApp()
    result = recovery.reconcile(app=reconciler, rebuild=False, now=time.time() + 5)
    assert result["resent_upload_ids"] == [upload_id]
    again = FakeApp()
    assert processing.process_job(make_spec(upload_id), app=again)["reason"] == "resent"
    for batch in again.batches():  # every row again, the first batch's included
        sink.save_batch(batch)
    assert in_table(pg_url, upload_id) == (VALID, VALID)
    st.get_redis().delete(st.redrive_key(upload_id))
    assert recovery.reconcile(app=FakeApp(), rebuild=False, now=time.time() + 5)["resent"] == 0
    assert upload_id not in st.watched_jobs()


def test_an_unreachable_database_postpones_the_decision(env, pg_url, monkeypatch):
    from worker.runtime.database import reset_pool

    upload_id, first = finished_job(env)
    sink.save_batch(first.batches()[0])
    monkeypatch.setenv("NOTIFY_DATABASE_URL", "postgresql://postgres@127.0.0.1:1/none")
    monkeypatch.setenv("NOTIFY_DATABASE_POOL_TIMEOUT_SECONDS", "1")
    try:
        result = recovery.reconcile(app=FakeApp(), rebuild=False, now=time.time() + 5)
    finally:
        reset_pool()
    assert result["resent"] == 0
    assert upload_id in st.watched_jobs()  # still watched: decided once the database answers
