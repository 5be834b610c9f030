"""A poisoned sink batch is dead-lettered without its recipients, and replay stores its rows.

Real worker (the session's thread worker), moto server over HTTP, the test Redis. The sink's
store is made to fail for the batch (a bug in the database worker, say); after the dead letter
every value of every key in every database of the test Redis is read: no recipient and no
personalisation value of the job is there. Then the "fix" is deployed and ``deadletter
replay`` rebuilds the batch from the CSV and stores every valid row once.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
import redis

from tasks.csv_batches import state as st
from tests.csv_fixtures import csv_text, job_kwargs, upload, wait_for
from tests.reliability_fixtures import redis_text
from worker.runtime import deadletter, queues
from worker.runtime.settings import get_worker_settings

pytestmark = pytest.mark.integration

ROWS = 40
BAD_EVERY = 10  # rows 10, 20, 30, 40 have a bad phone number


def job_rows(marker: str) -> list[list[str]]:
    rows = []
    for i in range(1, ROWS + 1):
        phone = "not a number" if i % BAD_EVERY == 0 else f"07700 9{i:05d}"
        rows.append([phone, f"{marker}-name-{i}"])
    return rows


def every_value(url: str) -> list[str]:
    """Every key name and value in every database of the Redis server behind ``url``."""
    found: list[str] = []
    base = redis.Redis.from_url(url)
    databases = int(base.config_get("databases").get("databases", 16))
    for db in range(databases):
        client = redis.Redis.from_url(url, db=db)
        found.extend(redis_text(client))
    return found


class BrokenStore:
    name = "broken"

    def save(self, batch: Any) -> int:
        raise RuntimeError("the notifications database rejected the batch")


def test_dead_lettered_sink_batch_keeps_no_recipient_and_replay_stores_its_rows(
    celery_worker, celery_app, s3, redis_client, monkeypatch
):
    import tasks.csv_batches.sink as sink

    marker = f"secret{uuid.uuid4().hex[:12]}"
    upload_id = upload(s3, csv_text(["phone number", "name"], job_rows(marker)))
    valid = ROWS - ROWS // BAD_EVERY
    monkeypatch.setattr(sink, "notification_store", lambda: BrokenStore())

    result = celery_app.send_task(
        queues.CSV_PROCESS_BATCH, kwargs=job_kwargs(upload_id), queue=queues.CSV_BATCHES
    ).get(timeout=60)
    assert result["status"] == "ok", result
    assert result["rows_dispatched"] == valid
    wait_for(lambda: deadletter.count() == 1, timeout=30)

    (entry,) = deadletter.entries()
    assert entry.failed_task == queues.NOTIFICATIONS_SAVE_BATCH
    assert entry.task == queues.CSV_REPLAY_ROWS
    assert entry.error_code == "internal_error"
    assert entry.kwargs["upload_id"] == upload_id
    assert (entry.kwargs["first_row"], entry.kwargs["last_row"]) == (1, ROWS - 1)
    assert entry.kwargs["rows"] == valid
    assert entry.kwargs["params"]["template"]["placeholders"] == ["name"]
    assert "batch" not in entry.kwargs

    values = "\n".join(every_value(get_worker_settings().redis_url))
    assert upload_id in values  # the scan does see this job's keys...
    assert marker not in values  # ...but no personalisation value
    for i in range(1, ROWS + 1):
        if i % BAD_EVERY:
            assert f"447700{i + 900000:06d}" not in values  # nor a recipient, normalised
            assert f"07700 9{i:05d}" not in values  # or as uploaded
    assert not redis_client.hlen(st.notifications_key(upload_id))

    monkeypatch.undo()  # the fix is deployed
    replayed = deadletter.replay(app=celery_app)
    assert [old for old, _ in replayed] == [entry.task_id]
    outcome = celery_app.AsyncResult(replayed[0][1]).get(timeout=60)
    assert outcome["status"] == "ok", outcome
    assert (outcome["rows"], outcome["stored"]) == (valid, valid)
    assert deadletter.count() == 0

    stored = {
        k: json.loads(v) for k, v in redis_client.hgetall(st.notifications_key(upload_id)).items()
    }
    assert len(stored) == valid
    one = stored[str(uuid.uuid5(uuid.UUID(upload_id), "1"))]
    assert (one["row_number"], one["recipient"]) == (1, "447700900001")
    names = sorted(row["personalisation"]["name"] for row in stored.values())
    assert names == sorted(f"{marker}-name-{i}" for i in range(1, ROWS + 1) if i % BAD_EVERY)

    # Replayed twice (an operator's slip): nothing is stored twice.
    again = celery_app.send_task(queues.CSV_REPLAY_ROWS, kwargs=entry.kwargs).get(timeout=60)
    assert (again["rows"], again["stored"]) == (valid, 0)
    assert redis_client.hlen(st.notifications_key(upload_id)) == valid
