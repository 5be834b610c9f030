"""``notify-worker deadletter list|replay`` end to end, through a real worker."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.ops_fixtures import invoke
from worker.runtime import deadletter, queues
from worker.runtime.app import app
from worker.runtime.redis_state import key

pytestmark = pytest.mark.integration

SECRET = "07700900123"  # stands for a recipient: must never be printed


@app.task(name="tests.ops.broken_until_fixed", queue=queues.PERIODIC)
def broken_until_fixed(marker: str, recipient: str) -> dict:
    """Fails (unexpectedly: a dead letter) until the test 'deploys the fix' in Redis."""
    from worker.runtime.redis_state import get_redis

    r = get_redis()
    r.rpush(key("test", marker, "calls"), recipient)
    r.expire(key("test", marker, "calls"), 300)
    if not r.exists(key("test", marker, "fixed")):
        raise RuntimeError("bug")
    return {"status": "ok"}


def fail_once(redis_client) -> tuple[str, str]:
    marker = str(uuid.uuid4())
    result = broken_until_fixed.apply_async(kwargs={"marker": marker, "recipient": SECRET})
    assert result.get(timeout=30)["error_code"] == "internal_error"
    return marker, result.id


def test_list_shows_the_dead_letter_without_argument_values(celery_worker, redis_client):
    marker, task_id = fail_once(redis_client)
    listed = invoke("deadletter", "list")
    assert listed.exit_code == 0
    assert task_id in listed.output
    assert "tests.ops.broken_until_fixed" in listed.output
    assert "[marker,recipient]" in listed.output and "internal_error" in listed.output
    assert SECRET not in listed.output and marker not in listed.output

    as_json = invoke("deadletter", "list", "--json")
    [entry] = json.loads(as_json.output)
    assert entry["task_id"] == task_id
    assert entry["kwargs"] == ["marker", "recipient"]
    assert entry["queue"] == queues.PERIODIC
    assert SECRET not in as_json.output


def test_empty_store(redis_client):
    listed = invoke("deadletter", "list")
    assert listed.exit_code == 0 and "no dead letters" in listed.output


def test_replay_resends_with_the_original_arguments(celery_worker, redis_client):
    marker, task_id = fail_once(redis_client)
    redis_client.set(key("test", marker, "fixed"), 1, ex=300)  # the fix is deployed

    replayed = invoke("deadletter", "replay", task_id)
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed {task_id} as " in replayed.output
    new_id = replayed.output.split(" as ")[1].split()[0]
    assert new_id != task_id
    assert app.AsyncResult(new_id).get(timeout=30) == {"status": "ok"}
    # The second run saw the same arguments; the store is empty again.
    assert redis_client.lrange(key("test", marker, "calls"), 0, -1) == [SECRET, SECRET]
    assert deadletter.count() == 0
    assert SECRET not in replayed.output


def test_replay_all_and_refusals(celery_worker, redis_client):
    markers = [fail_once(redis_client)[0] for _ in range(2)]
    for marker in markers:
        redis_client.set(key("test", marker, "fixed"), 1, ex=300)

    with_nothing = invoke("deadletter", "replay")
    assert with_nothing.exit_code == 2 and "give TASK_IDS or --all" in with_nothing.output

    unknown = str(uuid.uuid4())
    missing = invoke("deadletter", "replay", unknown)
    assert missing.exit_code == 1 and unknown in missing.output
    assert deadletter.count() == 2  # nothing replayed by mistake

    replayed = invoke("deadletter", "replay", "--all")
    assert replayed.exit_code == 0
    new_ids = [line.split(" as ")[1] for line in replayed.output.splitlines() if " as " in line]
    assert len(new_ids) == 2
    for new_id in new_ids:
        assert app.AsyncResult(new_id).get(timeout=30) == {"status": "ok"}
    assert deadletter.count() == 0


def test_the_store_expires(celery_worker, redis_client):
    from worker.runtime.settings import get_worker_settings

    fail_once(redis_client)
    ttl = redis_client.ttl(deadletter.DEADLETTER_KEY)
    assert 0 < ttl <= get_worker_settings().state_ttl_seconds
