"""A pre-encoded batch on the real broker is the message ``send_task`` would have sent."""

from __future__ import annotations

import json
import uuid

import pytest

from tasks.csv_batches.fanout import BatchEncoder, BatchPublisher
from tests.csv_fixtures import broker_messages

pytestmark = pytest.mark.integration

# Headers that differ between any two messages.
_PER_MESSAGE = {"id", "root_id", "origin", "notify_sent_at"}  # notify_sent_at: the publish time


def test_publish_encoded_sends_what_send_task_sends(redis_client):
    import tasks.csv_batches.tasks  # noqa: F401  (registers the sink task, as in a worker)
    from worker.runtime.app import app
    from worker.runtime.settings import get_worker_settings

    app.finalize()  # as in a worker: send_task then sees the registered task's options
    upload_id = str(uuid.uuid4())
    base = {
        "service_id": str(uuid.uuid4()),
        "upload_id": upload_id,
        "template_id": str(uuid.uuid4()),
        "template_type": "sms",
        "sender_id": None,
    }
    keys = ["phone number", "name"]
    encoder = BatchEncoder(base, keys)
    values = [(f"447700900{n:03d}", [f"07700 900{n:03d}", f'P "{n}" caf\u00e9']) for n in range(3)]
    encoded = encoder.body([encoder.row(n + 1, v) for n, v in enumerate(values)])
    as_dicts = {
        **base,
        "rows": [
            {
                "notification_id": str(uuid.uuid5(uuid.UUID(upload_id), str(n + 1))),
                "row_number": n + 1,
                "recipient": recipient,
                "personalisation": dict(zip(keys, cells, strict=True)),
            }
            for n, (recipient, cells) in enumerate(values)
        ],
    }
    queue = f"test-fanout-{uuid.uuid4()}"
    try:
        with BatchPublisher(app, "notify.notifications.save_batch", queue) as publisher:
            publisher.publish(as_dicts)
            publisher.publish_encoded(encoded, 3)
        assert publisher.messages == 2
        plain, fast = broker_messages(get_worker_settings().redis_url, queue)
    finally:
        redis_client.delete(queue)
    assert fast["kwargs"] == plain["kwargs"] == {"batch": as_dicts}
    assert fast["args"] == plain["args"] == []
    assert fast["headers"]["kwargsrepr"] == "{'batch': '<3 rows>'}"
    assert "07700" not in str(fast["headers"])
    # The registered sink task's own time limits, as send_task applies them.
    sink = app.tasks["notify.notifications.save_batch"]
    assert fast["headers"]["timelimit"] == [sink.time_limit, sink.soft_time_limit]
    same = {k: v for k, v in plain["headers"].items() if k not in _PER_MESSAGE}
    assert {k: v for k, v in fast["headers"].items() if k not in _PER_MESSAGE} == same


def test_an_encoded_batch_sends_no_task_sent_event(redis_client):
    """Documented trade: batches skip the task-sent event (Flower sees them from the worker
    that runs them); a plain send_task still sends one."""
    import redis

    from worker.runtime.app import app
    from worker.runtime.settings import get_worker_settings

    assert app.conf.task_send_sent_event
    upload_id = str(uuid.uuid4())
    base = {"service_id": str(uuid.uuid4()), "upload_id": upload_id, "template_id": None}
    encoder = BatchEncoder(base, [])
    listener = redis.Redis.from_url(get_worker_settings().redis_url).pubsub()
    listener.psubscribe("*celeryev*")
    listener.get_message(timeout=1)  # the subscription's confirmation
    queue = f"test-fanout-{uuid.uuid4()}"
    try:
        with BatchPublisher(app, "notify.notifications.save_batch", queue) as publisher:
            publisher.publish_encoded(encoder.body([encoder.row(1, ("447700900001", []))]), 1)
            assert listener.get_message(timeout=0.5) is None
            publisher.publish(json.loads(encoder.body([]))[1]["batch"])
            event = listener.get_message(timeout=2)
        assert event is not None and event["channel"].endswith(b"task.sent")
    finally:
        listener.close()
        redis_client.delete(queue)
