"""A real worker's task log lines carry the task id, task name, service id and upload id."""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest

from storage.errors import InvalidInput
from worker.runtime import queues
from worker.runtime.app import app
from worker.runtime.logs import CONTEXT_FIELDS

pytestmark = pytest.mark.integration

RECIPIENT = "07700900456"  # stands for personal data: must never reach a log line


@app.task(name="tests.ops.logs_ids", queue=queues.PERIODIC)
def logs_ids(service_id: str, upload_id: str, recipient: str, fail: bool = False) -> dict:
    logging.getLogger("tasks.test").info("working on the job")
    if fail:
        raise InvalidInput("reference must be 1-32 characters of A-Z and 0-9.", code="bad_ref")
    return {"status": "ok"}


def test_thread_worker_lines_carry_the_ids(celery_worker, redis_client, captured):
    service_id, upload_id = str(uuid.uuid4()), str(uuid.uuid4())
    kwargs = {"service_id": service_id, "upload_id": upload_id, "recipient": RECIPIENT}
    ok = logs_ids.apply_async(kwargs=kwargs)
    failed = logs_ids.apply_async(kwargs={**kwargs, "fail": True})
    assert ok.get(timeout=30) == {"status": "ok"}
    assert failed.get(timeout=30)["error_code"] == "bad_ref"

    def lines_of(task_id: str) -> list[logging.LogRecord]:
        return [r for r in captured.records if r.task_id == task_id]

    [working] = [r for r in lines_of(ok.id) if r.getMessage() == "working on the job"]
    assert (working.task_name, working.service_id, working.upload_id) == (
        "tests.ops.logs_ids",
        service_id,
        upload_id,
    )
    # The base class's own line for a refused input carries them too.
    [refused] = [r for r in lines_of(failed.id) if r.levelno == logging.WARNING]
    assert refused.getMessage().startswith("failed: bad_ref")
    assert (refused.service_id, refused.upload_id) == (service_id, upload_id)
    # Celery's own lines outside the task body have no ids, and nothing has the recipient.
    assert all(RECIPIENT not in r.getMessage() for r in captured.records)


@pytest.mark.slow
def test_prefork_worker_writes_json_lines_with_the_ids(prefork_worker, s3, redis_client):
    # A queue of its own: the session's thread worker (if started) consumes the usual ones.
    private_queue = f"ops-logging-{uuid.uuid4().hex[:8]}"
    worker = prefork_worker(concurrency=1, queues=private_queue, NOTIFY_LOG_FORMAT="json")
    service_id, upload_id = str(uuid.uuid4()), str(uuid.uuid4())
    # A real task with a refused argument: the base class logs the failure in the task context.
    result = app.send_task(
        queues.LETTERS_MOVE_TRANSIENT,
        kwargs={
            "service_id": service_id,
            "upload_id": upload_id,
            "reference": "not a reference",
            "postage": "second",
            "created_at": "2024-05-01T12:00:00Z",
        },
        queue=private_queue,
    )
    assert result.get(timeout=60)["status"] == "failed"
    deadline = time.monotonic() + 10
    mine: list[dict] = []
    while time.monotonic() < deadline and not mine:
        records = [json.loads(line) for line in worker.log().splitlines() if line.startswith("{")]
        mine = [r for r in records if r.get("task_id") == result.id]
        time.sleep(0.2)
    assert mine, worker.log()[-3000:]
    for record in mine:
        assert set(CONTEXT_FIELDS) | {"time", "level", "name", "message"} <= set(record)
        assert record["task_name"] == queues.LETTERS_MOVE_TRANSIENT
        assert record["service_id"] == service_id and record["upload_id"] == upload_id
    assert any(r["level"] == "WARNING" and r["message"].startswith("failed:") for r in mine)
    # Every line our handler wrote is JSON (Celery's start-up banner is plain print output).
    assert all(json.loads(line) for line in worker.log().splitlines() if line.startswith("{"))
