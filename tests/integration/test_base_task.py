"""The task base class through a real worker: retries, no retry for bad input, redelivery cap,
dead letters, JSON only."""

from __future__ import annotations

import json
import uuid

import pytest

from storage.errors import InvalidInput, S3Transient
from worker.runtime import deadletter, queues
from worker.runtime.app import app
from worker.runtime.redis_state import key

pytestmark = pytest.mark.integration

CALLS: dict[str, int] = {}


def _count(name: str) -> int:
    CALLS[name] = CALLS.get(name, 0) + 1
    return CALLS[name]


@app.task(name="tests.base.bad_input", queue=queues.PERIODIC)
def bad_input_task(marker: str) -> dict:
    _count(marker)
    raise InvalidInput("service_id must be a UUID, got 'x'.", code="invalid_id")


@app.task(name="tests.base.flaky", queue=queues.PERIODIC)
def flaky_task(marker: str, failures: int) -> dict:
    if _count(marker) <= failures:
        raise S3Transient("S3 is busy (SlowDown). Will retry.")
    return {"status": "ok", "calls": CALLS[marker]}


@app.task(name="tests.base.broken", queue=queues.PERIODIC)
def broken_task(marker: str) -> dict:
    _count(marker)
    raise ZeroDivisionError("boom")


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    from worker.runtime import base

    monkeypatch.setattr(base, "backoff_seconds", lambda retries: 0.05)


def test_bad_input_fails_at_once_without_retry(celery_worker, redis_client):
    marker = str(uuid.uuid4())
    result = bad_input_task.apply_async(kwargs={"marker": marker}).get(timeout=30)
    assert result == {
        "status": "failed",
        "error_code": "invalid_id",
        "error_message": "service_id must be a UUID, got 'x'.",
    }
    assert CALLS[marker] == 1
    assert deadletter.count() == 0


def test_transient_errors_are_retried_until_success(celery_worker, redis_client):
    marker = str(uuid.uuid4())
    result = flaky_task.apply_async(kwargs={"marker": marker, "failures": 2}).get(timeout=30)
    assert result == {"status": "ok", "calls": 3}


def test_retries_run_out_into_the_dead_letter_store(celery_worker, redis_client, monkeypatch):
    monkeypatch.setattr(flaky_task, "max_retries", 2)
    marker = str(uuid.uuid4())
    async_result = flaky_task.apply_async(kwargs={"marker": marker, "failures": 99})
    result = async_result.get(timeout=30)
    assert result["status"] == "failed"
    assert result["error_code"] == "s3_transient"
    assert CALLS[marker] == 3  # the first run and two retries
    [entry] = deadletter.entries()
    assert entry.task_id == async_result.id
    assert entry.kwargs == {"marker": marker, "failures": 99}


def test_unexpected_errors_are_failed_and_dead_lettered(celery_worker, redis_client):
    marker = str(uuid.uuid4())
    result = broken_task.apply_async(kwargs={"marker": marker}).get(timeout=30)
    assert result["status"] == "failed"
    assert result["error_code"] == "internal_error"
    assert "boom" not in result["error_message"]  # messages may carry data; logs have it
    assert deadletter.count() == 1


def test_redelivery_cap_stops_a_poison_message(celery_worker, redis_client):
    from worker.runtime.settings import get_worker_settings

    marker = str(uuid.uuid4())
    task_id = str(uuid.uuid4())
    cap = get_worker_settings().max_redeliveries
    # As if the message had already been delivered (and killed its worker) cap + 1 times.
    redis_client.set(key("deliveries", task_id, "0"), cap + 1)
    result = bad_input_task.apply_async(kwargs={"marker": marker}, task_id=task_id).get(timeout=30)
    assert result["error_code"] == "redelivery_cap"
    assert marker not in CALLS  # never ran
    [entry] = deadletter.entries()
    assert entry.task_id == task_id and entry.task == "tests.base.bad_input"


def test_dead_letters_can_be_replayed(celery_worker, redis_client):
    marker = str(uuid.uuid4())
    broken_task.apply_async(kwargs={"marker": marker}).get(timeout=30)
    [(old, new)] = deadletter.replay()
    app.AsyncResult(new).get(timeout=30)
    assert CALLS[marker] == 2
    assert old != new


def test_pickled_messages_are_refused(celery_worker, redis_client):
    """A pickle message is never deserialised: the worker drops it and the task never runs."""
    import pickle

    from kombu import Connection

    marker = str(uuid.uuid4())
    body = pickle.dumps(((), {"marker": marker}, {}))
    with Connection(app.conf.broker_url) as conn:
        producer = conn.Producer()
        producer.publish(
            body,
            routing_key=queues.PERIODIC,
            exchange=queues.PERIODIC,
            serializer=None,
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "task": "tests.base.bad_input",
                "id": str(uuid.uuid4()),
                "lang": "py",
                "argsrepr": "()",
                "kwargsrepr": "{}",
            },
            declare=[app.amqp.queues[queues.PERIODIC]],
        )
    # A JSON task sent after it is processed, proving the worker moved past the pickle one.
    follow = str(uuid.uuid4())
    bad_input_task.apply_async(kwargs={"marker": follow}).get(timeout=30)
    assert CALLS.get(follow) == 1
    assert marker not in CALLS


def test_json_only_configuration():
    assert app.conf.accept_content == ["json"]
    assert app.conf.task_serializer == "json"
    assert app.conf.result_accept_content == ["json"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost
    assert app.conf.worker_prefetch_multiplier == 1
    visibility = app.conf.broker_transport_options["visibility_timeout"]
    assert app.conf.task_time_limit < visibility
    assert json.loads(json.dumps(app.conf.broker_transport_options))
