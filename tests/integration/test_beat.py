"""Two ``notify-worker beat`` processes against one Redis: only the lock holder sends, and the
standby takes over when the holder dies, without a tick ever being sent twice.

The beats use a redis-server of their own, so the real schedule they load (cleanup sweeps
included) never reaches a test worker. A fast entry (every second, to a queue nobody consumes)
is added through RedBeat's own API while they run; its messages are counted in Redis.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.beat_fixtures import LOCK_TIMEOUT
from tests.reliability_fixtures import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INTERVAL = 1.0


def message_ids(beat_redis, queue: str) -> list[str]:
    return [json.loads(raw)["headers"]["id"] for raw in beat_redis.lrange(queue, 0, -1)]


def add_fast_entry(queue: str, redis_url: str) -> None:
    from celery import Celery
    from celery.schedules import schedule
    from redbeat import RedBeatSchedulerEntry

    from worker.runtime import beat

    app = Celery("beat-test", broker=redis_url, set_as_current=False)
    app.conf.update(redbeat_redis_url=redis_url, redbeat_key_prefix=beat.KEY_PREFIX)
    RedBeatSchedulerEntry(
        "ops-test-tick",
        "notify.test.beat_tick",
        schedule(run_every=INTERVAL),
        options={"queue": queue},
        app=app,
    ).save()


def count_over(beat_redis, queue: str, seconds: float) -> tuple[int, float]:
    """Messages sent in a window of about ``seconds``, and the window's real length."""
    before = beat_redis.llen(queue)
    started = time.monotonic()
    time.sleep(seconds)
    return beat_redis.llen(queue) - before, time.monotonic() - started


def test_two_beats_send_each_tick_once_and_fail_over(beats, beat_redis, private_redis_url):
    queue = f"ops-beat-test-{uuid.uuid4().hex[:8]}"
    first, second = beats(2)
    wait_for(lambda: first.holds_lock or second.holds_lock, 30, what="a beat to take the lock")
    time.sleep(1)
    holder, standby = (first, second) if first.holds_lock else (second, first)
    assert not standby.holds_lock  # it is blocked on the lock, sending nothing
    assert beat_redis.exists("notify:beat:lock")
    assert 0 < beat_redis.ttl("notify:beat:lock") <= LOCK_TIMEOUT

    add_fast_entry(queue, private_redis_url)
    wait_for(lambda: beat_redis.llen(queue) > 0, 15, what="the first tick")
    sent, window = count_over(beat_redis, queue, 6)
    # One scheduler: about one message a second. Two would send about twice that.
    assert 3 <= sent <= window / INTERVAL + 1, (sent, window)
    assert "Sending due task ops-test-tick" in holder.log()
    assert "Sending due task" not in standby.log()

    # The holder dies without releasing the lock: the standby takes over after it expires.
    holder.process.kill()
    holder.process.wait(10)
    died = time.monotonic()
    wait_for(lambda: standby.holds_lock, LOCK_TIMEOUT + 15, what="the standby to take the lock")
    took_over = time.monotonic() - died
    assert took_over <= LOCK_TIMEOUT + 2 * 5 + 2  # the expiry plus up to two lock polls
    wait_for(lambda: "Sending due task ops-test-tick" in standby.log(), 10, what="standby ticks")
    sent, window = count_over(beat_redis, queue, 4)
    assert 2 <= sent <= window / INTERVAL + 1, (sent, window)

    ids = message_ids(beat_redis, queue)
    assert len(ids) == len(set(ids))  # each message is its own tick, none re-sent
    beat_redis.delete(queue)


def test_a_clean_stop_hands_over_at_once(beats, beat_redis):
    first, second = beats(2)
    wait_for(lambda: first.holds_lock or second.holds_lock, 30, what="a beat to take the lock")
    holder, standby = (first, second) if first.holds_lock else (second, first)
    stopped = time.monotonic()
    holder.stop()  # SIGTERM: RedBeat releases the lock on the way out
    assert "beat: Releasing lock" in holder.log()
    wait_for(lambda: standby.holds_lock, 5 + 5, what="the standby to take the lock")
    assert time.monotonic() - stopped < LOCK_TIMEOUT + 5
