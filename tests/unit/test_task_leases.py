"""Task leases against a real Redis: register, beat, release, re-send, old deliveries dropped.

The requests are stand-ins for Celery's worker-side ``Request`` (the attributes the keeper
reads); the re-send goes to a recording app. The whole path with real workers killed is in
tests/integration/test_task_leases.py.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest

from worker.runtime import leases, queues

LETTER_KWARGS = {"service_id": str(uuid.uuid4()), "upload_id": str(uuid.uuid4())}


class FakeRequest:
    def __init__(
        self, name: str = queues.LETTERS_MOVE_TRANSIENT, generation: int | None = None
    ) -> None:
        self.id = str(uuid.uuid4())
        self.name = name
        self.args: list[Any] = []
        self.kwargs = dict(LETTER_KWARGS)
        self.delivery_info = {"routing_key": "letters-x"}
        self.request_dict: dict[str, Any] = {}
        if generation is not None:
            self.request_dict[leases.GENERATION_HEADER] = generation
        self.acknowledged = False
        self.hostname = "host-a@test"


class RecordingApp:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **options: Any) -> None:
        self.sent.append({"name": name, **options})


@pytest.fixture
def keeper(redis_client) -> leases.LeaseKeeper:
    return leases.LeaseKeeper("host-a@test")


def test_a_received_leased_task_is_recorded_with_what_a_resend_needs(keeper, redis_client):
    request = FakeRequest()
    assert keeper.register(request)
    record = redis_client.hgetall(leases.record_key(request.id))
    assert record["name"] == queues.LETTERS_MOVE_TRANSIENT
    assert record["queue"] == "letters-x"
    assert record["generation"] == "0"
    assert record["host"] == "host-a@test"
    assert json.loads(record["kwargs"]) == {"args": [], "kwargs": LETTER_KWARGS}
    assert redis_client.zscore(leases.LIVE_KEY, request.id) == pytest.approx(time.time(), abs=5)
    assert redis_client.ttl(leases.record_key(request.id)) > 0
    assert keeper.held() == [request.id]
    assert not leases.superseded(request.id, None)


def test_a_held_lease_is_beaten_and_released_by_the_end_of_its_run(
    keeper, redis_client, monkeypatch
):
    request = FakeRequest()
    keeper.register(request)
    assert request.request_dict[leases.TAG_HEADER]  # travels to the pool child
    redis_client.zadd(leases.LIVE_KEY, {request.id: 1.0})  # as if long silent
    assert keeper.tick() == (1, 0)  # within the grace after "received"
    assert redis_client.zscore(leases.LIVE_KEY, request.id) > time.time() - 5

    assert run_ended(request) == 1  # in the pool child
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None
    record = redis_client.hgetall(leases.record_key(request.id))
    assert "tag" not in record and record["generation"] == "0"  # kept as a tombstone
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request.acknowledged = True
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    assert "tag" not in redis_client.hgetall(leases.record_key(request.id))  # nothing written back


def run_ended(request: FakeRequest) -> int:
    """What the pool child does when the task's run ended (Celery's task_postrun)."""
    return leases.finish(
        request.id,
        request.request_dict[leases.TAG_HEADER],
        request.request_dict.get(leases.GENERATION_HEADER),
    )


def test_a_request_the_worker_forgot_keeps_its_lease_silent_for_the_reconciler(
    keeper, redis_client, monkeypatch
):
    # A lost broker connection cancels and forgets a request without acknowledging it, and
    # kombu's restore of its message may have gone to a dead server: the lease must outlive it.
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = FakeRequest()
    keeper.register(request)
    redis_client.zadd(leases.LIVE_KEY, {request.id: 1.0})  # its last beat, long ago
    assert keeper.tick() == (0, 0)  # out of the worker's sets: looked at again next tick
    assert keeper.held() == [request.id]
    assert keeper.tick() == (0, 0)  # still gone, never acknowledged: kept, no longer beaten
    assert keeper.held() == []
    assert redis_client.zscore(leases.LIVE_KEY, request.id) == 1.0
    assert redis_client.hget(leases.record_key(request.id), "tag")

    app = RecordingApp()
    assert leases.resend_stale_tasks(app=app) == [request.id]  # re-sent by the reconciler
    assert app.sent[0]["headers"] == {leases.GENERATION_HEADER: 1}
    assert leases.superseded(request.id, 0)  # a late redelivery of the old message is dropped


def test_the_task_postrun_signal_releases_the_lease_of_a_leased_task(keeper, redis_client):
    from celery.app.task import Context

    class FakeTask:
        name = queues.LETTERS_MOVE_TRANSIENT

    request = FakeRequest()
    keeper.register(request)
    task = FakeTask()
    task.request = Context(dict(request.request_dict))  # what the child's task.request holds
    leases._on_task_postrun(task=task, task_id=request.id)
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None
    assert "tag" not in redis_client.hgetall(leases.record_key(request.id))


def test_an_acknowledged_request_whose_run_never_ended_keeps_the_lease(
    keeper, redis_client, monkeypatch
):
    # Celery acknowledges a run it terminated after a lost connection as if revoked, and marks a
    # request acknowledged when the call failed on a dead connection: no end of a run.
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = FakeRequest()
    keeper.register(request)
    request.acknowledged = True
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is not None
    assert redis_client.hget(leases.record_key(request.id), "tag")


def test_a_revoked_request_releases_its_lease(keeper, redis_client, monkeypatch):
    from celery.worker import state as worker_state

    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = FakeRequest()
    keeper.register(request)
    request.acknowledged = True
    worker_state.revoked.add(request.id)
    try:
        assert keeper.tick() == (0, 1)
    finally:
        worker_state.revoked.discard(request.id)
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None
    assert keeper.held() == []


def registered_then_record_lost(keeper, redis_client) -> FakeRequest:
    """A delivery whose lease record a failover lost (the new primary never received it),
    already out of the worker's sets."""
    request = FakeRequest()
    keeper.register(request)
    redis_client.delete(leases.record_key(request.id))
    redis_client.zrem(leases.LIVE_KEY, request.id)
    return request


def test_a_run_that_ended_after_the_failover_lost_its_record_is_not_resent(
    keeper, redis_client, monkeypatch
):
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = registered_then_record_lost(keeper, redis_client)
    assert run_ended(request) == 2  # a tombstone
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    assert not redis_client.hget(leases.record_key(request.id), "tag")
    assert leases.resend_stale_tasks(app=RecordingApp(), now=time.time() + 10_000) == []


def test_a_lease_record_the_state_store_lost_is_written_again(keeper, redis_client):
    # A failover to a replica that had not yet received the record.
    request = FakeRequest()
    keeper.register(request)
    redis_client.delete(leases.record_key(request.id))
    redis_client.zrem(leases.LIVE_KEY, request.id)
    assert keeper.tick() == (1, 0)
    record = redis_client.hgetall(leases.record_key(request.id))
    assert record["name"] == queues.LETTERS_MOVE_TRANSIENT and record["tag"]
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is not None
    assert keeper.tick() == (1, 0)  # and beaten from then on
    assert redis_client.zscore(leases.LIVE_KEY, request.id) > time.time() - 5


def test_a_lease_redis_refused_at_receipt_is_recorded_by_the_heartbeat(
    keeper, redis_client, monkeypatch
):
    import redis

    class Down:
        def eval(self, *_: Any) -> None:
            raise redis.ConnectionError("failing over")

    real = leases.get_redis
    monkeypatch.setattr(leases, "get_redis", lambda: Down())
    request = FakeRequest()
    assert not keeper.register(request)
    assert keeper.held() == [request.id]
    assert not redis_client.exists(leases.record_key(request.id))
    monkeypatch.setattr(leases, "get_redis", real)
    assert keeper.tick() == (1, 0)
    assert redis_client.hget(leases.record_key(request.id), "tag")


def test_a_lease_redis_refused_is_recorded_even_once_forgotten(keeper, redis_client, monkeypatch):
    import redis

    class Down:
        def eval(self, *_: Any) -> None:
            raise redis.ConnectionError("failing over")

    real = leases.get_redis
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    monkeypatch.setattr(leases, "get_redis", lambda: Down())
    request = FakeRequest()
    keeper.register(request)
    monkeypatch.setattr(leases, "get_redis", real)
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    assert redis_client.hget(leases.record_key(request.id), "tag")  # the reconciler will see it


def test_a_superseded_delivery_forgotten_by_the_worker_takes_nothing_back(
    keeper, redis_client, monkeypatch
):
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = FakeRequest()
    keeper.register(request)
    leases.resend_stale_tasks(app=RecordingApp(), now=time.time() + 10_000)
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    record = redis_client.hgetall(leases.record_key(request.id))
    assert record["generation"] == "1" and "tag" not in record
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None


def test_unleased_tasks_are_not_recorded(redis_client):
    for name in (queues.CSV_PROCESS_BATCH, queues.NOTIFICATIONS_SAVE_BATCH, queues.JOBS_RECONCILE):
        request = FakeRequest(name=name)
        leases._on_task_received(request=request)
        assert not redis_client.exists(leases.record_key(request.id))


def test_a_silent_lease_is_resent_once_with_the_same_id_and_a_newer_generation(
    keeper, redis_client
):
    request = FakeRequest()
    keeper.register(request)
    app = RecordingApp()
    assert leases.resend_stale_tasks(app=app) == []  # still fresh

    later = time.time() + 10_000
    assert leases.resend_stale_tasks(app=app, now=later) == [request.id]
    assert app.sent == [
        {
            "name": queues.LETTERS_MOVE_TRANSIENT,
            "args": [],
            "kwargs": LETTER_KWARGS,
            "task_id": request.id,
            "queue": "letters-x",
            "headers": {leases.GENERATION_HEADER: 1},
        }
    ]
    record = redis_client.hgetall(leases.record_key(request.id))
    assert record["generation"] == "1" and "tag" not in record
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None
    assert leases.resend_stale_tasks(app=app, now=later) == []  # not twice
    assert len(app.sent) == 1

    # The dead machine's delivery is old now; the re-sent one is not.
    assert leases.superseded(request.id, None)
    assert leases.superseded(request.id, 0)
    assert not leases.superseded(request.id, 1)
    assert not leases.superseded(request.id, "1")


@pytest.mark.parametrize(
    ("sent", "carried"),
    [("req-123.abc", "req-123.abc"), ("bad\nline", None), (None, None)],
)
def test_a_resend_carries_the_senders_request_id_on(keeper, redis_client, sent, carried):
    request = FakeRequest()
    if sent is not None:
        request.request_dict[queues.REQUEST_ID_HEADER] = sent
    keeper.register(request)
    app = RecordingApp()
    assert leases.resend_stale_tasks(app=app, now=time.time() + 10_000) == [request.id]
    headers = app.sent[0]["headers"]
    assert headers.get(queues.REQUEST_ID_HEADER) == carried
    assert headers[leases.GENERATION_HEADER] == 1


def test_after_a_resend_the_old_delivery_can_neither_beat_nor_take_the_lease_back(
    keeper, redis_client
):
    request = FakeRequest()
    keeper.register(request)
    leases.resend_stale_tasks(app=RecordingApp(), now=time.time() + 10_000)

    assert keeper.tick() == (1, 0)  # it still thinks it holds the lease...
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None  # ...but beats nothing
    again = FakeRequest()
    again.id = request.id  # the same message, handed out again by Redis
    assert not keeper.register(again)

    newer = FakeRequest(generation=1)
    newer.id = request.id
    assert keeper.register(newer)  # the re-sent delivery takes the lease
    assert redis_client.hget(leases.record_key(request.id), "generation") == "1"
    assert run_ended(request) == 0  # the old delivery's end must not drop the new lease
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is not None


def test_a_resend_received_before_the_generation_was_raised_keeps_its_lease(keeper, redis_client):
    # The reconciler publishes first and raises the generation after: the new delivery may
    # already hold the lease by then.
    request = FakeRequest()
    keeper.register(request)
    newer = FakeRequest(generation=1)
    newer.id = request.id
    keeper.register(newer)
    cutoff = time.time() + 10_000
    key = leases.record_key(request.id)
    assert redis_client.eval(leases._SUPERSEDE, 2, key, leases.LIVE_KEY, request.id, 1, cutoff) == 0
    assert redis_client.hget(key, "tag")
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is not None


def test_an_expired_record_is_dropped_from_the_live_index(redis_client):
    redis_client.zadd(leases.LIVE_KEY, {"gone": 1.0})
    assert leases.resend_stale_tasks(app=RecordingApp()) == []
    assert redis_client.zscore(leases.LIVE_KEY, "gone") is None


def test_heartbeat_interval_is_several_beats_per_stale_period():
    assert leases.heartbeat_interval(300) == 5.0
    assert leases.heartbeat_interval(3) == 0.75
    assert leases.heartbeat_interval(0) == 0.2


def test_a_requeued_delivery_keeps_its_lease_until_its_redelivery_takes_it(
    keeper, redis_client, monkeypatch
):
    # A pool child lost: Celery rejects with requeue, and kombu puts back only what the
    # server's unacked hash holds (after a failover, maybe nothing). Not an end.
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = FakeRequest()
    keeper.register(request)
    request.acknowledged = True  # rejected with requeue: acknowledged for Celery, no run ended
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    first_tag = redis_client.hget(leases.record_key(request.id), "tag")
    assert first_tag

    again = FakeRequest()  # the requeued message, received again: same generation
    again.id = request.id
    assert keeper.register(again)
    assert redis_client.hget(leases.record_key(request.id), "tag") != first_tag
    assert run_ended(again) == 1
    assert redis_client.zscore(leases.LIVE_KEY, request.id) is None


def test_a_forgotten_request_whose_record_the_failover_lost_is_recorded_again(
    keeper, redis_client, monkeypatch
):
    monkeypatch.setattr(leases, "_RECEIVED_GRACE_SECONDS", 0.0)
    request = registered_then_record_lost(keeper, redis_client)
    keeper.tick()
    keeper.tick()
    assert keeper.held() == []
    assert redis_client.hget(leases.record_key(request.id), "tag")
    app = RecordingApp()
    assert leases.resend_stale_tasks(app=app, now=time.time() + 10_000) == [request.id]
