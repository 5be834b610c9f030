"""``notify-worker status``: queue lengths, unacked messages, dead letters and the jobs section,
read from a real Redis broker (a redis-server of its own, so no test worker consumes the
messages and the counts are only this test's)."""

from __future__ import annotations

import json

import pytest
from celery import Celery
from kombu import Connection

from tests.ops_fixtures import invoke
from worker.runtime import deadletter, queues

pytestmark = pytest.mark.integration


@pytest.fixture
def broker(monkeypatch, private_redis_url):
    """Point REDIS_URL at an empty Redis of the test's own; yields its URL."""
    from worker.runtime.redis_state import reset_redis
    from worker.runtime.settings import reload_worker_settings

    url = private_redis_url
    monkeypatch.setenv("REDIS_URL", url)
    reload_worker_settings()
    reset_redis()
    yield url
    monkeypatch.undo()
    reload_worker_settings()
    reset_redis()


def send(url: str, queue: str, count: int) -> None:
    sender = Celery("status-test", broker=url, set_as_current=False)
    sender.conf.task_serializer = "json"
    for n in range(count):
        sender.send_task("notify.test.nothing", kwargs={"n": n}, queue=queue)


def record_dead_letter(task_id: str) -> None:
    deadletter.record(
        deadletter.DeadLetter(
            task_id=task_id,
            task="notify.test.nothing",
            queue=queues.LETTERS,
            kwargs={"upload_id": "x"},
            reason="gave up",
            error_code="s3_transient",
        )
    )


@pytest.fixture
def fake_jobs(monkeypatch):
    """A jobs summary from the CSV workflow's state module (faked: counts are its business)."""
    summary = {"running": 2, "queued": 1, "scheduled": 3, "stuck": 1}
    from tasks.csv_batches import state

    monkeypatch.setattr(state, "status_summary", lambda: summary)
    return summary


def test_status_counts_waiting_unacked_and_dead_letters(broker, fake_jobs):
    send(broker, queues.LETTERS, 3)
    send(broker, queues.CSV_BATCHES_BULK, 2)
    record_dead_letter("t-1")
    record_dead_letter("t-2")
    # One message delivered to a consumer and not yet acknowledged (acks are late).
    with Connection(broker) as conn:
        consumer_queue = conn.SimpleQueue(queues.LETTERS)
        message = consumer_queue.get(timeout=5)
        assert message is not None

        result = invoke("status", "--json")
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        message.ack()
        consumer_queue.close()

    assert status["queues"][queues.LETTERS] == 2
    assert status["queues"][queues.CSV_BATCHES_BULK] == 2
    assert status["queues"][queues.REPORTS] == 0
    assert set(status["queues"]) == set(queues.all_queues())
    assert status["unacked"] == 1
    assert status["deadletters"] == 2
    assert status["jobs"] == fake_jobs


def test_status_text_output(broker, fake_jobs):
    send(broker, queues.CLEANUP, 4)
    result = invoke("status")
    assert result.exit_code == 0, result.output
    out = result.output
    cleanup_line = next(line for line in out.splitlines() if line.strip().startswith("cleanup "))
    assert cleanup_line.split()[-1] == "4"
    assert "unacked (delivered, not yet acknowledged): 0" in out
    assert "jobs running: 2" in out and "jobs stuck: 1" in out and "jobs scheduled: 3" in out
    assert "dead letters: 0" in out


def test_the_real_jobs_summary(broker):
    status = json.loads(invoke("status", "--json").output)
    assert set(status["jobs"]) >= {"running", "scheduled", "stuck"}


def test_unreachable_redis_is_a_clear_error(monkeypatch):
    from worker.local.servers import free_port
    from worker.runtime.redis_state import reset_redis
    from worker.runtime.settings import reload_worker_settings

    monkeypatch.setenv("REDIS_URL", f"redis://:secret@127.0.0.1:{free_port()}/0")
    reload_worker_settings()
    reset_redis()
    try:
        result = invoke("status")
        assert result.exit_code == 1
        assert "Cannot read the broker at redis://:**@127.0.0.1" in result.output
        assert "secret" not in result.output
    finally:
        monkeypatch.undo()
        reload_worker_settings()
        reset_redis()
