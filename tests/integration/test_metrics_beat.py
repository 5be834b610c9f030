"""Beat's exporter: a real ``notify-worker beat`` serving its tick, its lock and the gauges
read from Redis; a standby beat serves none of the Redis gauges (one source per gauge)."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.beat_fixtures import Beat
from tests.metrics_fixtures import scrape, value
from tests.reliability_fixtures import wait_for
from worker.local.servers import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def start_beat(tmp_path, number: int, port: int, redis_url: str, monkeypatch) -> Beat:
    monkeypatch.setenv("NOTIFY_METRICS_PORT", str(port))
    monkeypatch.setenv("NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS", "8")
    return Beat(tmp_path, number, redis_url)


def test_active_beat_serves_redis_gauges_and_standby_does_not(
    tmp_path, beat_redis, private_redis_url, monkeypatch
):
    first_port, second_port = free_port(), free_port()
    first = start_beat(tmp_path, 1, first_port, private_redis_url, monkeypatch)
    try:
        wait_for(lambda: first.holds_lock, 30, what="the first beat to take the lock")
        second = start_beat(tmp_path, 2, second_port, private_redis_url, monkeypatch)
        try:
            # Work waiting in Redis: a message in the letters queue sent 5 minutes ago, a dead
            # letter, a running job whose heartbeat is long gone, a scheduled job.
            sent = time.time() - 300
            message = {"headers": {"id": str(uuid.uuid4()), "notify_sent_at": sent}}
            beat_redis.lpush("letters", json.dumps(message))
            beat_redis.hset("notify:deadletter", "t1", "{}")
            running, scheduled = str(uuid.uuid4()), str(uuid.uuid4())
            beat_redis.hset(f"notify:job:{running}", mapping={"status": "running", "heartbeat": 1})
            beat_redis.hset(f"notify:job:{scheduled}", mapping={"status": "scheduled"})
            beat_redis.zadd("notify:jobs:pending", {running: 1, scheduled: 2})

            def scraped():
                try:
                    return scrape(first_port)
                except OSError:
                    return None

            wait_for(lambda: scraped() is not None, 30, what="the active beat's exporter")
            wait_for(
                lambda: value(scraped(), "notify_beat_last_tick_timestamp_seconds") > 0,
                15,
                what="a tick",
            )
            samples = scraped()
            assert value(samples, "notify_beat_active") == 1
            assert time.time() - value(samples, "notify_beat_last_tick_timestamp_seconds") < 15
            assert value(samples, "notify_queue_messages", queue="letters") == 1
            assert value(samples, "notify_queue_messages", queue="reports") == 0
            age = value(samples, "notify_queue_oldest_message_age_seconds", queue="letters")
            assert 299 < age < 400
            assert value(samples, "notify_deadletters") == 1
            assert value(samples, "notify_jobs", status="running") == 1
            assert value(samples, "notify_jobs", status="scheduled") == 1
            assert value(samples, "notify_jobs_stuck") == 1

            wait_for(lambda: _answers(second_port), 30, what="the standby's exporter")
            standby = scrape(second_port)
            assert value(standby, "notify_beat_active") == 0
            assert not [
                name for name, _ in standby if name.startswith(("notify_queue", "notify_jobs"))
            ]
        finally:
            second.stop()
    finally:
        first.stop()


def _answers(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True
