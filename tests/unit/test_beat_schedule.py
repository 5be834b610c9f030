"""The beat schedule and the single-scheduler settings."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from celery.schedules import crontab

from storage.buckets import REGISTRY
from storage.errors import ConfigurationError
from worker.runtime import beat, queues


@pytest.fixture
def schedule() -> dict:
    return beat.beat_schedule()


def seconds(entry: dict) -> float:
    value = entry["schedule"]
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def test_reconciler_every_minute(schedule):
    entry = schedule["reconcile-jobs"]
    assert entry["task"] == queues.JOBS_RECONCILE
    assert seconds(entry) == 60
    assert entry["options"]["queue"] == queues.PERIODIC


def test_release_due_runs_often(schedule):
    entry = schedule["release-due-csv-jobs"]
    assert entry["task"] == queues.CSV_RELEASE_DUE
    assert seconds(entry) <= 60
    assert entry["options"]["queue"] == queues.PERIODIC


def test_letters_sweep_hourly(schedule):
    entry = schedule["sweep-transient-letters"]
    assert entry["task"] == queues.LETTERS_SWEEP_TRANSIENT
    cron = entry["schedule"]
    assert isinstance(cron, crontab)
    assert cron.hour == set(range(24)) and len(cron.minute) == 1


def test_cleanup_nightly_staggered_per_purpose(schedule):
    """Every purpose, protected ones included: their sweep deletes no object but aborts stale
    multipart uploads (tests/unit/test_cleanup_sweep.py proves the refusal)."""
    cleanup = {n: e for n, e in schedule.items() if e["task"] == queues.CLEANUP_SWEEP}
    purposes = [e["kwargs"]["bucket"] for e in cleanup.values()]
    assert sorted(purposes) == sorted(REGISTRY)
    moments = set()
    for entry in cleanup.values():
        assert entry["kwargs"]["dry_run"] is False  # beat deletes; the task defaults to a dry run
        assert entry["options"]["queue"] == queues.CLEANUP
        cron = entry["schedule"]
        assert len(cron.hour) == 1 and len(cron.minute) == 1
        assert cron.day_of_week == set(range(7))  # every night
        (hour,), (minute,) = cron.hour, cron.minute
        assert 0 <= hour <= 5  # at night
        moments.add(hour * 60 + minute)
    assert len(moments) == len(cleanup)  # staggered: never two sweeps at once
    gaps = sorted(moments)
    assert min(b - a for a, b in itertools.pairwise(gaps)) >= 5


def test_every_entry_is_a_contract_task_on_its_queue(schedule):
    for name, entry in schedule.items():
        assert entry["task"] in queues.TASK_QUEUES, name
        assert entry["options"]["queue"] == queues.TASK_QUEUES[entry["task"]], name
        assert entry["options"]["queue"] in queues.all_queues()


def test_interval_entries_expire_before_the_next_tick(schedule):
    # A tick that waited in a backed-up queue is dropped, not piled up behind the next one.
    for entry in schedule.values():
        if not isinstance(entry["schedule"], crontab):
            assert 0 < entry["options"]["expires"] < seconds(entry)


def test_celery_uses_redbeat_with_the_notify_lock():
    from worker.runtime.app import app

    conf = app.conf
    assert conf.beat_scheduler == "worker.runtime.beat_scheduler:NotifyRedBeatScheduler"
    assert conf.redbeat_lock_key == "notify:beat:lock"
    assert conf.redbeat_key_prefix.startswith("notify:")
    assert conf.redbeat_lock_timeout > conf.beat_max_loop_interval
    assert conf.redbeat_redis_url == conf.broker_url
    assert "visibility_timeout" not in conf.redbeat_redis_options
    assert set(conf.beat_schedule) == set(beat.beat_schedule())


def test_lock_timeout_setting():
    assert beat.lock_timeout({}) == 60
    assert beat.lock_timeout({"NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS": "15"}) == 15
    with pytest.raises(ConfigurationError, match="NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS"):
        beat.lock_timeout({"NOTIFY_BEAT_LOCK_TIMEOUT_SECONDS": str(beat.BEAT_MAX_LOOP_INTERVAL)})
