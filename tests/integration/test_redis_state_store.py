"""A separate state store: the broker on one redis-server (``REDIS_URL``, no persistence), the
``notify:`` state and beat on another (``NOTIFY_STATE_REDIS_URL``). Real prefork workers and
beat, in subprocesses.

* each server holds only its own keys: ``notify:*`` never on the broker, kombu's never on the
  state store;
* the broker flushed entirely in the middle of a CSV job loses nothing: the job ends
  ``finished`` and every valid row is stored exactly once (the reconciler re-sends what the
  broker lost, from the state);
* the state store flushed: a scheduled job's schedule comes back from the object's metadata
  on the next reconcile, the broker untouched.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from tests.csv_fixtures import SERVICE_ID, csv_text, head, job_kwargs, sms_rows, upload
from tests.redis_fixtures import cli, project_env, start_beat
from tests.reliability_fixtures import wait_for
from worker.local.servers import LocalRedis, start_redis_server
from worker.runtime import queues

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS, BAD_EVERY = 60_000, 50
VALID = ROWS - ROWS // BAD_EVERY
ENV = {
    "NOTIFY_JOB_STALE_SECONDS": "2",
    "NOTIFY_RECONCILE_INTERVAL_SECONDS": "2",
    "NOTIFY_VISIBILITY_TIMEOUT_SECONDS": "40",
    "NOTIFY_TASK_TIME_LIMIT_SECONDS": "35",
}


@pytest.fixture
def servers():
    broker, state = start_redis_server(), start_redis_server()
    yield broker, state
    broker.stop()
    state.stop()


def env_for(broker: LocalRedis, state: LocalRedis, moto_endpoint: str) -> dict[str, str]:
    return {
        "REDIS_URL": broker.url,
        "NOTIFY_STATE_REDIS_URL": state.url,
        "S3_ENDPOINT_URL": moto_endpoint,
        **ENV,
    }


def client(server: LocalRedis, db: int = 0) -> redis.Redis:
    return redis.Redis("127.0.0.1", server.port, db=db, decode_responses=True)


def assert_kept_apart(broker: redis.Redis, state: redis.Redis) -> None:
    assert not list(broker.scan_iter("notify:*"))
    state_keys = set(state.scan_iter("*"))
    assert all(k.startswith("notify:") for k in state_keys), sorted(state_keys)[:10]


def test_flushing_the_broker_mid_job_loses_nothing(
    s3, servers, rel_workers, tmp_path: Path, moto_endpoint
):
    broker_server, state_server = servers
    overrides = env_for(broker_server, state_server, moto_endpoint)
    env = project_env(dict(os.environ), **overrides)
    broker, state = client(broker_server), client(state_server)
    csv_queues = f"{queues.CSV_BATCHES},{queues.bulk_queue(queues.CSV_BATCHES)}"
    first = rel_workers(concurrency=1, queues=csv_queues, **overrides)
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(ROWS, bad_every=BAD_EVERY)))
    job, sink = f"notify:job:{upload_id}", f"notify:notifications:{upload_id}"
    sent = cli(env, "enqueue", queues.CSV_PROCESS_BATCH, json.dumps(job_kwargs(upload_id)))
    assert sent.returncode == 0, sent.stderr

    def mid_dispatch() -> bool:
        fields = state.hmget(job, "status", "checkpoint")
        return fields[0] == "running" and int(fields[1] or 0) > 0

    wait_for(mid_dispatch, 90, 0.01, what="the job to be mid-dispatch")
    assert broker.dbsize() > 0
    broker.flushall()  # the broker's Redis restarts empty
    flushed_at = state.hgetall(job)

    wait_for(lambda: state.hget(job, "status") == "finished", 120, 0.2, what="the job to end")
    beat = start_beat(env, tmp_path / "beat.log")
    everything = rel_workers(concurrency=2, **overrides)
    try:
        wait_for(lambda: state.hlen(sink) >= VALID, 180, 0.5, what="every valid row stored")
        wait_for(lambda: "resend" not in state.hgetall(job), 60, 0.2, what="the re-send to end")
    finally:
        beat.stop()
    numbers = [json.loads(v)["row_number"] for v in state.hgetall(sink).values()]
    assert len(numbers) == len(set(numbers)) == VALID
    assert set(numbers) == {n for n in range(1, ROWS + 1) if n % BAD_EVERY}
    final = state.hgetall(job)
    assert (final["status"], int(final["dispatched"]), int(final["stored"])) == (
        "finished",
        VALID,
        VALID,
    )
    assert int(final.get("resends") or 0) >= 1  # the rows the flush took were sent again
    assert int(flushed_at["checkpoint"]) < ROWS
    meta = head(s3, upload_id, service_id=SERVICE_ID)["Metadata"]
    assert (meta["processing_status"], meta["processing_rows_dispatched"]) == (
        "finished",
        str(VALID),
    )
    assert_kept_apart(broker, state)
    assert "re-sending the rows of finished job" in first.log() + everything.log()


def test_losing_the_state_store_rebuilds_schedules_from_s3(s3, servers, rel_workers, moto_endpoint):
    broker_server, state_server = servers
    overrides = env_for(broker_server, state_server, moto_endpoint)
    env = project_env(dict(os.environ), **overrides)
    broker, state = client(broker_server), client(state_server)
    rel_workers(concurrency=1, **overrides)
    upload_id = upload(s3, csv_text(["phone number", "name"], sms_rows(20)))
    due = (datetime.now(UTC) + timedelta(hours=2)).replace(microsecond=0)
    kwargs = job_kwargs(upload_id, scheduled_for=due.isoformat().replace("+00:00", "Z"))
    ran = cli(env, "enqueue", queues.CSV_PROCESS_BATCH, json.dumps(kwargs), "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert state.zscore("notify:jobs:scheduled", upload_id) == due.timestamp()
    kombu_keys = {k for k in broker.scan_iter("*")}

    state.flushall()  # the state store is lost
    time.sleep(0.2)
    ran = cli(env, "enqueue", queues.JOBS_RECONCILE, "{}", "--wait")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout)
    assert result["rebuilt"] == 1
    assert state.zscore("notify:jobs:scheduled", upload_id) == due.timestamp()
    assert state.hget(f"notify:job:{upload_id}", "status") == "scheduled"
    assert kombu_keys <= {k for k in broker.scan_iter("*")} | {"unacked", "unacked_index"}
    assert_kept_apart(broker, state)
